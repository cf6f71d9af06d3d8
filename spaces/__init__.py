"""The room core of Hearth: everything about rooms, and nothing about sockets.

    protocol.py           hearth.v1 on the wire: client messages, their decoder, error codes
    server_messages.py    the server's messages, each with one to_wire
    connection.py         one client connection: frames + now -> effects
    venue.py              all rooms, session tokens, role tickets
    room.py               one room: members, seats, positions, sequence, epoch
    voice.py              which listeners hear a voice frame
    voicelink.py          voice over WebTransport: session tokens, datagram framing
    layout.py             a room's floor plan: hearth, seats, quiet corners
    pseudonyms.py         generated and chosen pseudonyms, avatars
    confusables.py        Unicode's confusables (UTS #39): the skeleton of a pseudonym
    confusables_table.py  generated from confusables.txt by confusables.py
    ratelimit.py          token buckets with injected time
    effects.py            what the core asks the shell to do
    stats.py              counters the core keeps for /metrics
    wording.py            counts in sentences people read ("1 second", "2 seconds")
    config.py             typed config with precise errors, and the TableReader every
                          config file is read with
    host.py               the routing host: which node runs each room, where each frame
                          goes, takeover, durable welcomes and alerts (node effects out)
    relay.py              messages between nodes, typed, each with one pack and unpack
    ports.py              what the core needs of moderation: the crisis desk, bans,
                          reports (typed Protocols moderation/ implements)
    addresses.py          client addresses as keyed hashes, one per UTC day's salt
    broker.py             the seam nodes talk through; MemoryBroker for one process
                          (web/redis_broker.py: the same seam over Redis)
    e2ee/                 end-to-end encryption (sender keys, envelopes, franking)

I/O happens only in config.py (load_config reads the config file) and
confusables.py (its generator command, run by hand, reads Unicode's file).
Everything else is sans-IO: time comes in as an argument, effects go out as
values (spaces.effects), and one adapter in web/ applies them. Nothing here
imports moderation/, web/ or Twisted (tests/unit/test_layers.py).

Moderation plugs into the core: the venue takes a crisis desk, a ban list and
a report queue as the Protocols of ports.py, and moderation/wiring.py builds
a venue with moderation's own.
"""
