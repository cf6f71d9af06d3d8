"""/crisis/helplines.json and /crisis/rules/<lang>.json: what the browser needs offline.

Built once at start from config/crisis/ (moderation.crisis_config): the
participant's client caches the helplines of the chosen country when it
joins, so the card shows even when the connection is down, and runs the
rule pack on the person's own device (the server never sees the text).
Participants get only the entries the operator has verified;
/crisis/helplines-console.json, for the facilitators' console, has every
entry, the unverified ones marked.
"""

from __future__ import annotations

import json

from twisted.web import resource, server

from hearth.moderation.crisis_config import CrisisReference, helplines_to_json, pack_to_json


class CrisisData(resource.Resource):
    isLeaf = True

    def __init__(self, crisis: CrisisReference) -> None:
        super().__init__()
        self.files = {
            ("helplines.json",): json.dumps(helplines_to_json(crisis.helplines)).encode(),
            ("helplines-console.json",): json.dumps(
                helplines_to_json(crisis.helplines, everything=True)).encode()}
        # Packs compact (no spaces after separators): every page downloads one, within the
        # detector's budget of 300 KB with the script.
        for lang, pack in crisis.packs.items():
            self.files[("rules", f"{lang}.json")] = json.dumps(
                pack_to_json(pack), separators=(",", ":")).encode()

    def render_GET(self, request: server.Request) -> bytes:
        key = tuple(p.decode("ascii", "replace") for p in request.postpath)
        body = self.files.get(key)
        request.setHeader(b"Content-Type", b"application/json")
        if body is None:
            request.setResponseCode(404)
            return b'{"error":"not_found"}'
        request.setHeader(b"Cache-Control", b"public, max-age=3600")
        return body
