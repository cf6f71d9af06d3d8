"""The Twisted shell around the room core: it moves bytes and nothing else.

    cli.py       the `hearth` command; installs the asyncio reactor first
    service.py   the service tree: listeners on endpoint strings, the room tick
    site.py      one Site: pages (jinja2), static files, /healthz, /ws
    ws.py        the autobahn WebSocket protocol: handshake checks, frames in/out
    node.py      this process's connections; applies the core's effects
    templates/   jinja2 pages (autoescaped)
    static/      the browser client, served by Hearth itself (no CDN)
"""
