"""Moderation: who may do what, and what is kept of it. It builds on the room core
(spaces/) and is driven by the shell (web/); spaces/ never imports it.

    crisis.py         the crisis desk: help, flags, "I'm worried" -> incidents -> alerts
    controls.py       facilitator controls: the role check, what each does, the audit
    incidents.py      the incident state machine and its escalation tiers
    crisis_config.py  config/crisis/ (helplines, rule packs, escalation), checked at load
    detector.py       the crisis phrase detector's rule packs (run in the browser)
    detector_eval.py  how well the detector does on a labelled corpus (a command)
    detector_train.py  trains the detector's model beside each rule pack (a command)
    bans.py           bans by a keyed hash of the address, never the address
    reports.py        verified reports (message franking) queued for facilitators
    wiring.py         a venue with the crisis desk, controls, bans and reports plugged in
    login.py          facilitator sign-in without I/O: throttle, sessions, CSRF
    sealed.py         records shared through Redis, sealed with a MAC
    accounts.py       facilitator accounts: argon2id hashes, TOTP, the account file
    audit.py          the audit log: who did what to whom, never what was said
    outbox.py         the crisis outbox: alerts kept until delivered
    journal.py        append-only JSON-lines files, one fsync per record

I/O happens only in journal.py (appends and rewrites files), audit.py and
outbox.py (through journal.py), accounts.py (the account file, under a lock),
crisis_config.py (load_crisis reads config/crisis/), detector_eval.py (a
command reading rule packs and a corpus) and detector_train.py (a command
that also writes the models beside the packs). Everything else is sans-IO and
reads no clock: time comes in as `now`, effects go out as values. No Twisted
here (tests/unit/test_layers.py).
"""
