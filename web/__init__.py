"""The Twisted shell around the core: sockets, HTTP, files and timers. What a room, a
facilitator's control or an incident does is decided in spaces/ and moderation/;
this package parses, hands over, and applies the effects it gets back.

    cli.py              the `hearth` command; installs the asyncio reactor first
    service.py          the service tree: listeners on endpoint strings, the room tick
    site.py             one Site: pages, static files, health, /ws
    static_files.py     /static: content-hashed URLs, so a page never mixes versions
    ws.py               the WebSocket endpoint /ws: autobahn frames in and out
    wsfast.py           the WebSocket fast path: whole frames in, one send per turn out
    webtransport.py     voice over WebTransport datagrams (aioquic, same reactor)
    node.py             this process's connections; applies the core's effects
    redis_broker.py     the broker seam (spaces/broker.py) over Redis
    pages.py            the participant's pages: landing, join, room (jinja2)
    auth.py             facilitator sign-in: /login, /logout, /console, role tickets
    ack_link.py         the acknowledgement link in an on-call alert
    crisis_data.py      /crisis/*.json: helplines and rule packs for the browser
    alerts.py           crisis alerts out: webhooks, e-mail, the incident log
    shared_outbox.py    the crisis outbox shared between nodes
    shared_logs.py      every node's audit and incident records in one place
    shared_accounts.py  facilitator accounts shared between nodes
    drill.py            `hearth drill`: a test incident through the whole chain
    lifecycle.py        a graceful stop and a restart members live through
    reload.py           SIGHUP: the config read again without a restart
    systemd.py          sd_notify: readiness and the watchdog under systemd
    retention.py        what is kept on disk, how long, and the daily purge
    metrics.py          Prometheus /metrics
    logs.py             where log events go, and what they may carry
    proxy.py            a client's address behind a trusted reverse proxy
    i18n.py             the pages' languages and catalogs
    datadir.py          the data directory and the deployment's secrets
    templates/          jinja2 pages (autoescaped)
    static/             the browser client, served by Hearth itself (no CDN)
    locale/             the pages' translation catalogs
"""
