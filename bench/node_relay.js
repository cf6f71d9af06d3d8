// The second baseline: the plain relay people reach for in Node.js, with the `ws` library.
//
// The same protocol as bench/baseline.py (the autobahn relay): the first text message
// names the room ({"type":"join","room":...}) and gets a tiny welcome; every later
// message, text or binary, goes to every other member of that room. No validation,
// sequence numbers, roles or voice routing. permessage-deflate off (ciphertext does not
// compress), bufferutil loaded (ws's native masking; the bench checks it is), TCP_NODELAY
// (ws sets it on every socket), payloads up to 64 KiB.
//
// Installed by the bench (bench/servers.py `ensure_node_ws`: ws and bufferutil, pinned,
// into bench/.node, never committed). Run: NODE_PATH=bench/.node/node_modules node
// bench/node_relay.js [port]; it prints "Open http://127.0.0.1:PORT/" like `hearth serve`.
'use strict';

const http = require('http');
const { WebSocketServer } = require('ws');

let bufferutil = false;
try { require('bufferutil'); bufferutil = true; } catch (e) { bufferutil = false; }

const rooms = new Map();
let counter = 0;

const server = http.createServer((req, res) => { res.writeHead(404); res.end(); });
const wss = new WebSocketServer({
  server,
  path: '/ws',
  perMessageDeflate: false,
  maxPayload: 65536,
  clientTracking: false,
  handleProtocols: (protocols) => (protocols.has('hearth.v1') ? 'hearth.v1' : false),
});

wss.on('connection', (ws) => {
  let members = null;
  ws.on('message', (data, isBinary) => {
    if (members === null) {
      if (isBinary) return;
      let room;
      try { room = String(JSON.parse(data).room); } catch (e) { return; }
      members = rooms.get(room);
      if (members === undefined) { members = new Set(); rooms.set(room, members); }
      members.add(ws);
      counter += 1;
      ws.send(JSON.stringify({ type: 'welcome', member: `m${counter}`, room: { id: room, seq: 0 } }));
      return;
    }
    for (const other of members) {
      if (other !== ws && other.readyState === 1) other.send(data, { binary: isBinary });
    }
  });
  ws.on('close', () => { if (members !== null) members.delete(ws); members = null; });
  ws.on('error', () => {});
});

const port = Number(process.argv[2] || 0);
server.listen(port, '127.0.0.1', () => {
  const { port: bound } = server.address();
  process.stdout.write(`\nNode ws relay is running (bufferutil ${bufferutil ? 'on' : 'off'}).\n`
    + `  Open http://127.0.0.1:${bound}/\n`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
