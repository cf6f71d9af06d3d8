"""The Python client of hearth.v1: tests, benchmarks, drills and bots speak through it.

    websocket.py   HearthClient: one WebSocket connection (autobahn on Twisted)
    groupchat.py   GroupChat: E2EE group chat and voice over a HearthClient, the
                   twin of the browser's web/static/js/groupchat.js

It stands on the room core's wire types (hearth.spaces.protocol, hearth.spaces.e2ee)
and nothing else of the server: it talks to a server only through a socket.
"""
