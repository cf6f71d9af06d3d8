"""The room core of Hearth: everything about rooms, and nothing about sockets.

    protocol.py    hearth.v1 on the wire: decode client frames, error codes
    connection.py  one client connection: frames + now -> effects
    venue.py       all rooms, session tokens, role tickets, reports
    room.py        one room: members, seats, positions, sequence, epoch
    layout.py      a room's floor plan: hearth, seats, quiet corners
    pseudonyms.py  generated and chosen pseudonyms, avatars
    ratelimit.py   token buckets with injected time
    effects.py     what the core asks the shell to do
    config.py      typed config with precise errors
    broker.py      the seam rooms publish through (MemoryBroker; Redis later)
    client.py      the Python client: tests, benchmarks, drills and bots use it
    e2ee/          end-to-end encryption (sender keys, envelopes, franking)

Everything except broker.py's implementations and client.py is sans-IO:
time comes in as an argument, effects go out as values (spaces.effects).
"""
