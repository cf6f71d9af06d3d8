"""The browser module (web/static/js/e2ee.js) against the shared vectors and a live Python peer.

Runs Debian's Chromium headless through Playwright. The page is served over
http://127.0.0.1 (a secure context, so WebCrypto is available) by a tiny
threaded http.server. Playwright's sync API lives on its own worker thread
(tests/browser/runner.py, shared with the other browser tests): the test process
may already run Twisted's asyncio reactor (pytest-twisted), and the sync API
refuses to run inside a running event loop. Every page call is raced against a
JS timer, and the worker call against a Python timeout, so a stuck page fails
the test instead of hanging CI.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hearth.spaces.e2ee import E2EEError, GroupSession, server_tag, verify_report, voice_header
from tests.browser.runner import RunnerPage, require_browser, runner_page

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
TEST_FILES = {"e2ee_page.html", "vector_runner.js"}


@pytest.fixture(scope="module")
def browser() -> Iterator[RunnerPage]:
    with runner_page(HERE, TEST_FILES, "e2ee_page.html") as page:
        yield page


def test_missing_browser_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="missing"):
        require_browser("/nonexistent/chromium")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="missing"):
        require_browser("/nonexistent/chromium")


def test_page_is_a_secure_context_with_webcrypto(browser: RunnerPage) -> None:
    assert browser.evaluate("window.isSecureContext && typeof crypto.subtle === 'object'") is True


def test_every_vector_passes_in_the_browser(browser: RunnerPage, vectors: dict[str, Any]) -> None:
    result = browser.call("runAll", vectors)
    assert result["failures"] == [], "\n".join(result["failures"])
    counts = result["counts"]
    # Each file was really exercised (not skipped by an early throw): at least one check per vector.
    assert counts["primitives"] >= len(vectors["primitives"]["fields"]) + 4 * 2
    assert counts["identity"] >= len(vectors["identity"]["identities"]) * 2
    assert counts["envelope"] >= 3 * len(vectors["envelope"]["cases"]) + len(
        vectors["envelope"]["rejections"])
    assert counts["message"] >= 5 * len(vectors["message"]["cases"]) + len(
        vectors["message"]["rejections"])
    assert counts["franking"] >= len(vectors["franking"]["tags"]) + len(
        vectors["franking"]["reports"])
    voice = vectors["voice"]
    assert counts["voice"] >= len(voice["derivations"]) + 5 * len(voice["frames"]) + len(
        voice["openings"]) + len(voice["sender_keys"])
    assert counts["session"] == len(vectors["session"]["steps"]) + len(vectors["session"]["rng"])
    assert browser.page_errors == []


def test_a_broken_vector_is_reported(browser: RunnerPage, vectors: dict[str, Any]) -> None:
    """The runner must be able to fail: corrupt one expected byte and one expected code."""
    broken = {**vectors, "message": {**vectors["message"]}}
    case = dict(broken["message"]["cases"][0])
    case["body"] = base64.b64encode(b"\x01" + base64.b64decode(case["body"])[1:-1] + b"\x00").decode()
    rejection = {**broken["message"]["rejections"][0], "code": "e2ee.replay"}
    broken["message"]["cases"] = [case]
    broken["message"]["rejections"] = [rejection]
    frame = dict(vectors["voice"]["frames"][0])
    frame["frame"] = frame["frame"][:-2] + ("00" if frame["frame"][-2:] != "00" else "01")
    opening = {**vectors["voice"]["openings"][1], "code": "e2ee.tampered"}  # the slot-stamped one
    broken["voice"] = {**vectors["voice"], "frames": [frame], "openings": [opening]}
    failures = browser.call("runAll", broken)["failures"]
    assert any(f.startswith("message: seal #0") for f in failures)
    assert any(f.startswith("voice: seal #0") for f in failures)
    assert any(f.startswith("voice: open: slot stamped by the server") for f in failures)
    assert any("reject: " + rejection["description"] in f for f in failures)


class Link:
    """Python GroupSessions and browser GroupSessions in one room, and the relay between them."""

    def __init__(self, browser: RunnerPage, room: str) -> None:
        self.browser = browser
        self.room = room
        self.js_keys: dict[str, dict[str, Any]] = {}
        self.sealed: dict[tuple[str, str, int], str] = {}  # (from, to, epoch) -> body, as a server keeps
        self.member_of: dict[str, str] = {}  # browser session name -> its member id

    def js_create(self, member: str) -> dict[str, Any]:
        keys: dict[str, Any] = self.browser.call("liveCreate", member, self.room, member)
        self.js_keys[member] = keys
        return keys

    def js(self, member: str, op: str, *args: Any) -> Any:
        return self.browser.call("liveCall", member, op, list(args))

    def js_reload(self, name: str, new_name: str) -> dict[str, Any]:
        """A reload of the browser session `name`: the same member, as `new_name`."""
        result: dict[str, Any] = self.browser.call("liveReload", name, new_name)
        self.member_of[new_name] = self.member_of.get(name, name)
        return result

    def roster(self, py: dict[str, GroupSession], js: list[str]) -> dict[str, dict[str, Any]]:
        keys = {m: s.public_keys() for m, s in py.items()}
        for name in js:
            keys[self.member_of.get(name, name)] = self.js_keys[name] = self.js(name, "publicKeys")
        return keys

    def relay(self, py: dict[str, GroupSession], js: list[str], epoch: int,
              extra: dict[str, dict[str, Any]] | None = None) -> None:
        """The epoch and roster everywhere; every member's epoch key published; the roster
        again; every directed envelope delivered to its member (and kept, as a server could)."""
        for _ in range(2):
            roster = {**self.roster(py, js), **(extra or {})}
            outgoing: list[tuple[str, str, str]] = []
            for member, session in py.items():
                outgoing += [(member, to, body) for to, body in session.update_roster(epoch, roster)]
            for name in js:
                result = self.js(name, "updateRoster", epoch, roster)
                member = self.member_of.get(name, name)
                outgoing += [(member, to, body) for to, body in result["envelopes"]]
            names = {self.member_of.get(name, name): name for name in js}
            for sender, to, body in outgoing:
                self.sealed[(sender, to, epoch)] = body
                if to in py:
                    py[to].receive_directed(sender, body)
                elif to in names:
                    assert self.js(names[to], "receiveDirected", sender, body) == {"ok": True}


def _relay(link: Link, py: dict[str, GroupSession], js: list[str], epoch: int) -> None:
    link.relay(py, js, epoch)


def test_python_and_browser_sessions_interoperate(browser: RunnerPage) -> None:
    link = Link(browser, "room-live")
    alice = GroupSession("room-live", "py-alice")
    link.js_create("js-bob")
    _relay(link, {"py-alice": alice}, ["js-bob"], 1)

    # Python-made messages open in the browser, byte for byte the same text.
    for text in ("Hello from Python", "Привет 👋 — مرحبا", "\ufeffBOM", ""):
        sent = alice.encrypt(text)
        got = link.js("js-bob", "decrypt", "py-alice", sent.body, sent.commitment)
        assert got["text"] == text
        assert got["franking_key"] == sent.franking_key.hex()

    # Browser-made messages verify and open in Python, and franking holds across languages.
    server_key = bytes(range(32))
    sent_js = link.js("js-bob", "encrypt", "Hello from the browser ☕")
    received = alice.decrypt("js-bob", sent_js["body"], sent_js["commitment"])
    assert received.text == "Hello from the browser ☕"
    tag = server_tag(server_key, received.commitment, "room-live", "js-bob", 7, 1_764_095_400_000)
    verify_report(server_key, plaintext=received.text, franking_key=received.franking_key,
                  commitment=received.commitment, tag=tag, room_id="room-live",
                  sender_id="js-bob", seq=7, ts=1_764_095_400_000)

    # Tampering is refused on both sides with the same code.
    sent_js = link.js("js-bob", "encrypt", "do not touch")
    raw = bytearray(base64.b64decode(sent_js["body"]))
    raw[15] ^= 1
    with pytest.raises(E2EEError) as caught:
        alice.decrypt("js-bob", base64.b64encode(raw).decode(), sent_js["commitment"])
    assert caught.value.code == "e2ee.bad_signature"
    sent_py = alice.encrypt("do not touch either")
    raw = bytearray(base64.b64decode(sent_py.body))
    raw[15] ^= 1
    assert link.js("js-bob", "decrypt", "py-alice", base64.b64encode(raw).decode(),
                   sent_py.commitment) == {"error": "e2ee.bad_signature"}
    # ...and a replay of a genuine message likewise.
    assert link.js("js-bob", "decrypt", "py-alice", sent_py.body, sent_py.commitment)["text"]
    assert link.js("js-bob", "decrypt", "py-alice", sent_py.body, sent_py.commitment) == {
        "error": "e2ee.replay"}

    # Both screens show the same safety code and fingerprints.
    assert link.js("js-bob", "safetyCode") == {"code": alice.safety_code()}
    assert link.js("js-bob", "fingerprint", "py-alice") == {
        "fingerprint": alice.fingerprint("py-alice")}

    # Concurrent encrypts in the browser are serialised: distinct indexes, all open in Python.
    burst = link.js("js-bob", "encryptMany", [f"burst {i}" for i in range(6)])
    assert sorted(m["index"] for m in burst) == list(range(burst[0]["index"],
                                                           burst[0]["index"] + 6))
    for i, message in reversed(list(enumerate(burst))):
        assert alice.decrypt("js-bob", message["body"], message["commitment"]).text == f"burst {i}"


def test_removal_rotates_keys_across_languages(browser: RunnerPage) -> None:
    link = Link(browser, "room-rotate")
    alice = GroupSession("room-rotate", "py-alice")
    mallory = GroupSession("room-rotate", "py-mallory")
    link.js_create("js-bob")
    link.js_create("js-carol")
    _relay(link, {"py-alice": alice, "py-mallory": mallory}, ["js-bob", "js-carol"], 1)
    before = link.js("js-bob", "encrypt", "everyone can read this")
    assert mallory.decrypt("js-bob", before["body"], before["commitment"]).text == (
        "everyone can read this")
    assert link.js("js-carol", "decrypt", "js-bob", before["body"], before["commitment"])[
        "text"] == "everyone can read this"

    # Mallory is removed: epoch 2; Mallory's session is not told and keeps its keys.
    _relay(link, {"py-alice": alice}, ["js-bob", "js-carol"], 2)
    after = link.js("js-bob", "encrypt", "only the three of us")
    assert after["epoch"] == 2
    assert alice.decrypt("js-bob", after["body"], after["commitment"]).text == "only the three of us"
    assert link.js("js-carol", "decrypt", "js-bob", after["body"], after["commitment"])[
        "text"] == "only the three of us"
    with pytest.raises(E2EEError) as caught:
        mallory.decrypt("js-bob", after["body"], after["commitment"])
    assert caught.value.code == "e2ee.no_sender_key"
    from_py = alice.encrypt("rotated in Python too")
    assert from_py.epoch == 2
    assert link.js("js-carol", "decrypt", "py-alice", from_py.body, from_py.commitment)[
        "text"] == "rotated in Python too"
    assert link.js("js-carol", "safetyCode") == {"code": alice.safety_code()}


def _stamp(frame: bytes, slot: int) -> bytes:
    return frame[:4] + slot.to_bytes(2, "big") + frame[6:]


def test_voice_frames_interoperate_and_the_browser_imports_each_key_once(
        browser: RunnerPage) -> None:
    link = Link(browser, "room-voice")
    alice = GroupSession("room-voice", "py-alice")
    mallory = GroupSession("room-voice", "py-mallory")
    link.js_create("js-bob")
    _relay(link, {"py-alice": alice, "py-mallory": mallory}, ["js-bob"], 1)

    # One second of Python speech, slot-stamped by the "server", decrypted in the browser.
    opus = [bytes([n]) * (40 + n % 20) for n in range(51)]
    frames = [_stamp(alice.encrypt_voice(o, seq=n, level=n % 128, speech=True, end=n == 50), 3)
              for n, o in enumerate(opus)]
    first = link.js("js-bob", "decryptVoice", "py-alice", frames[0].hex())
    assert first == {"opus": opus[0].hex(), "seq": 0, "level": 0, "flags": 1, "epoch": 1}
    second = link.js("js-bob", "decryptVoiceMany", "py-alice", [f.hex() for f in frames[1:]])
    assert second["imports"] == 0  # the CryptoKey is cached per (sender, epoch)
    assert [f["opus"] for f in second["frames"]] == [o.hex() for o in opus[1:]]
    assert second["frames"][-1]["flags"] == 3
    replayed = link.js("js-bob", "decryptVoiceMany", "py-alice", [frames[7].hex()])
    assert replayed["frames"] == [{"error": "e2ee.replay"}]

    # Browser speech, encrypted concurrently, opens in Python; the same refusals on both sides.
    burst = [bytes.fromhex(f) for f in link.js("js-bob", "encryptVoiceMany", "c0ffee", list(range(6)))]
    assert [voice_header(f).seq for f in burst] == list(range(6))
    for frame in reversed(burst):
        assert alice.decrypt_voice("js-bob", _stamp(frame, 9)).opus == bytes.fromhex("c0ffee")
    assert link.js("js-bob", "encryptVoice", "00", {"seq": 5, "level": 1, "speech": True}) == {
        "error": "e2ee.seq_reused"}
    tampered = bytearray(alice.encrypt_voice(b"hush", seq=60, level=90, speech=True))
    tampered[2] ^= 1
    assert link.js("js-bob", "decryptVoice", "py-alice", bytes(tampered).hex()) == {
        "error": "e2ee.tampered"}
    mine = bytes.fromhex(link.js("js-bob", "encryptVoice", "aa", {"seq": 6, "level": 1,
                                                                  "speech": False})["frame"])
    with pytest.raises(E2EEError) as caught:
        alice.decrypt_voice("js-bob", mine[:2] + bytes([mine[2] ^ 1]) + mine[3:])
    assert caught.value.code == "e2ee.tampered"

    # Mallory is removed (epoch 2): frames in flight from epoch 1 still open until bob's
    # epoch-2 key arrives, the new ones open for those who stayed and not for Mallory.
    in_flight = bytes.fromhex(link.js("js-bob", "encryptVoice", "11", {"seq": 7, "level": 1,
                                                                       "speech": True})["frame"])
    alice.update_roster(2, link.roster({"py-alice": alice}, ["js-bob"]))
    assert alice.decrypt_voice("js-bob", in_flight).epoch == 1
    _relay(link, {"py-alice": alice}, ["js-bob"], 2)
    with pytest.raises(E2EEError) as caught:
        alice.decrypt_voice("js-bob", in_flight)
    assert caught.value.code == "e2ee.stale_epoch"  # bob's new key closed its epoch 1
    after = bytes.fromhex(link.js("js-bob", "encryptVoice", "22", {"seq": 8, "level": 1,
                                                                   "speech": True})["frame"])
    assert alice.decrypt_voice("js-bob", after).epoch == 2
    with pytest.raises(E2EEError) as caught:
        mallory.decrypt_voice("js-bob", after)
    assert caught.value.code == "e2ee.no_sender_key"
    from_py = alice.encrypt_voice(b"rotated", seq=61, level=5, speech=True)
    assert link.js("js-bob", "decryptVoice", "py-alice", from_py.hex())["epoch"] == 2
    assert browser.page_errors == []


def test_replays_are_refused_in_the_browser_on_every_path(browser: RunnerPage) -> None:
    """Issue 17, point 2, in Chromium: key swap and back, leave and rejoin, resume, reload."""
    link = Link(browser, "room-replay")
    alice, mallory = GroupSession("room-replay", "py-alice"), GroupSession("room-replay", "py-m")
    link.js_create("js-bob")
    py = {"py-alice": alice, "py-m": mallory}
    link.relay(py, ["js-bob"], 1)
    said = alice.encrypt("said once")
    spoken = alice.encrypt_voice(b"spoken once", seq=3, level=9, speech=True)
    assert link.js("js-bob", "decrypt", "py-alice", said.body, said.commitment)["text"] == "said once"
    assert link.js("js-bob", "decryptVoice", "py-alice", spoken.hex())["seq"] == 3
    old_key = link.sealed[("py-alice", "js-bob", 1)]
    roster = link.roster(py, ["js-bob"])

    # Resume: the same session goes on; a re-sent sender key is a harmless duplicate, and
    # nothing already read or heard opens again.
    assert link.js("js-bob", "receiveDirected", "py-alice", old_key) == {"ok": True}
    assert link.js("js-bob", "decrypt", "py-alice", said.body, said.commitment) == {
        "error": "e2ee.replay"}
    assert link.js("js-bob", "decryptVoice", "py-alice", spoken.hex()) == {"error": "e2ee.replay"}

    # Key swap and back: treated like a leave (rotation required), and the original sender key
    # is never installed twice.
    swapped = link.js("js-bob", "updateRoster", 1, {**roster, "py-alice": roster["py-m"]})
    assert swapped["changes"]["keys_changed"] == ["py-alice"]
    assert swapped["changes"]["rotation_required"] is True
    assert link.js("js-bob", "encrypt", "not now") == {"error": "e2ee.rotation_required"}
    link.js("js-bob", "updateRoster", 1, roster)
    assert link.js("js-bob", "receiveDirected", "py-alice", old_key) == {"error": "e2ee.replay"}
    assert link.js("js-bob", "decrypt", "py-alice", said.body, said.commitment) == {
        "error": "e2ee.stale_epoch"}
    assert link.js("js-bob", "decryptVoice", "py-alice", spoken.hex()) == {
        "error": "e2ee.stale_epoch"}

    # Leave and rejoin in the same epoch: the same.
    link.js("js-bob", "updateRoster", 1, {m: k for m, k in roster.items() if m != "py-alice"})
    back = link.js("js-bob", "updateRoster", 1, roster)
    assert back["changes"]["joined"] == ["py-alice"]
    assert link.js("js-bob", "receiveDirected", "py-alice", old_key) == {"error": "e2ee.replay"}

    # The honest way on: a new epoch.
    link.relay(py, ["js-bob"], 2)
    fresh = alice.encrypt("epoch 2")
    assert link.js("js-bob", "decrypt", "py-alice", fresh.body, fresh.commitment)["text"] == "epoch 2"

    # Reload: the identity comes back through IndexedDB as non-extractable keys, nothing else.
    reloaded = link.js_reload("js-bob", "js-bob-2")
    assert reloaded["extractable"] == [False, False]
    assert {k: reloaded["keys"][k] for k in ("dh", "sig")} == {
        k: link.js_keys["js-bob"][k] for k in ("dh", "sig")}
    link.relay(py, ["js-bob-2"], 3, extra={})  # the resume after a reload advances the epoch
    assert alice.last_changes is not None and alice.last_changes.keys_changed == ()
    for body, commitment in ((said.body, said.commitment), (fresh.body, fresh.commitment)):
        assert link.js("js-bob-2", "decrypt", "py-alice", body, commitment) == {
            "error": "e2ee.stale_epoch"}
    assert link.js("js-bob-2", "decryptVoice", "py-alice", spoken.hex()) == {
        "error": "e2ee.stale_epoch"}
    assert link.js("js-bob-2", "receiveDirected", "py-alice", old_key) == {
        "error": "e2ee.stale_epoch"}
    after = alice.encrypt("after the reload")
    assert link.js("js-bob-2", "decrypt", "py-alice", after.body, after.commitment)["text"] == (
        "after the reload")
    voice = alice.encrypt_voice(b"after", seq=4, level=9, speech=True)
    assert link.js("js-bob-2", "decryptVoice", "py-alice", voice.hex())["seq"] == 4
    assert alice.safety_code() == link.js("js-bob-2", "safetyCode")["code"]


def test_small_order_keys_are_ignored_in_the_browser_and_the_others_still_get_keys(
        browser: RunnerPage) -> None:
    link = Link(browser, "room-bad-keys")
    alice, carol = GroupSession("room-bad-keys", "py-alice"), GroupSession("room-bad-keys", "py-c")
    link.js_create("js-bob")
    py = {"py-alice": alice, "py-c": carol}
    link.relay(py, ["js-bob"], 1)
    link.relay(py, [], 2, extra={"js-bob": link.js_keys["js-bob"]})  # the others are at epoch 2
    roster = link.roster(py, ["js-bob"])
    hostile = {
        "x-zero": {**roster["py-c"], "dh": base64.b64encode(bytes(32)).decode()},
        "x-one": {**roster["py-c"], "dh": base64.b64encode((1).to_bytes(32, "little")).decode()},
        "x-ed-identity": {**roster["py-c"], "sig": base64.b64encode((1).to_bytes(32, "little")).decode()},
        "x-unsigned-ek": {**roster["py-c"], "ek_epoch": 3},
    }
    result = link.js("js-bob", "updateRoster", 2, {**hostile, **roster})
    assert result["changes"]["ignored"] == sorted(hostile)
    assert sorted(to for to, _ in result["envelopes"]) == ["py-alice", "py-c"]
    for to, body in result["envelopes"]:
        py[to].receive_directed("js-bob", body)
    sent = link.js("js-bob", "encrypt", "still readable")
    for session in py.values():
        assert session.decrypt("js-bob", sent["body"], sent["commitment"]).text == "still readable"


def test_corner_ciphertext_forwarded_to_the_room_does_not_open_in_the_browser(
        browser: RunnerPage) -> None:
    """Issue 14, point 8, in Chromium: the corner's own session, keys the room never gets."""
    link = Link(browser, "room-corner")
    fac = GroupSession("room-corner", "py-fac")
    link.js_create("js-person")
    link.js_create("js-bystander")
    py = {"py-fac": fac}
    link.relay(py, ["js-person", "js-bystander"], 1)
    link.relay(py, ["js-person", "js-bystander"], 2)  # opening a corner advances the epoch
    browser.call("liveSub", "js-person", "corner-west", "js-person-corner")
    corner = fac.sub_session("corner-west")
    keys = link.roster(py, ["js-person"])
    members = {m: keys[m] for m in ("py-fac", "js-person")}
    from_js = link.js("js-person-corner", "updateRoster", 2, members)["envelopes"]
    for _, body in corner.update_roster(2, members):
        assert link.js("js-person-corner", "receiveDirected", "py-fac", body) == {"ok": True}
    for _, body in from_js:
        corner.receive_directed("js-person", body)
    said = link.js("js-person-corner", "encrypt", "only for the facilitator")
    assert corner.decrypt("js-person", said["body"], said["commitment"]).text == (
        "only for the facilitator")
    # Forwarded by a server to a room member, or into the room session of a corner member:
    assert link.js("js-bystander", "decrypt", "js-person", said["body"], said["commitment"]) == {
        "error": "e2ee.bad_signature"}
    with pytest.raises(E2EEError) as caught:
        fac.decrypt("js-person", said["body"], said["commitment"])
    assert caught.value.code == "e2ee.bad_signature"
    back = corner.encrypt("I'm here")
    assert link.js("js-person-corner", "decrypt", "py-fac", back.body, back.commitment)["text"] == (
        "I'm here")
    assert link.js("js-bystander", "decrypt", "py-fac", back.body, back.commitment) == {
        "error": "e2ee.bad_signature"}
    # Voice sealed in the corner does not open with the room's keys either.
    frame = corner.encrypt_voice(b"corner voice", seq=1, level=3, speech=True)
    assert link.js("js-person-corner", "decryptVoice", "py-fac", frame.hex())["opus"] == (
        b"corner voice".hex())
    assert link.js("js-bystander", "decryptVoice", "py-fac", frame.hex()) == {
        "error": "e2ee.tampered"}
    assert browser.page_errors == []
