"""The room page against a hostile server (docs/e2ee.md §11): what the person sees.

The room runs honestly for everyone but the page; what goes to the page passes through a
meddler (tests/support/meddler.py) that drops, reorders, duplicates, delays, relabels and
replays frames, and forges member lists, keys and epochs. Each test drives the real room
page (room.js, groupchat.js, e2ee.js) and checks what docs/e2ee.md promises it shows: a
refused message said as such, a warning, a changed safety code, a send that waits for new
keys; and that nothing is ever shown that its sender did not say, or shown twice.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from hearth.client.groupchat import GroupChat
from tests.browser.console_steps import open_room, signed_in_console
from tests.browser.harness import Browser, Page, keys_ready, log_has, open_page, say
from tests.support.live import LiveServer, caught_up, settle, until
from tests.support.meddler import Meddler, forged_keys

pytestmark = pytest.mark.browser

TEXTS = "() => [...document.querySelectorAll('#chat-log .msg .text')].map((n) => n.textContent)"
NOTICES = "() => [...document.querySelectorAll('#chat-log .notice')].map((n) => n.textContent)"
CODE = "() => document.getElementById('safety-code').textContent"
FINGERPRINT = ("(id) => document.querySelector(`#fingerprints dd[data-member='${id}']`)"
               "?.textContent ?? null")
REFUSED = "A message from {} could not be verified and was not shown."
TOO_LATE = "A message from {} arrived after the keys had changed and could not be decrypted."
WAIT_FOR_KEYS = "Waiting for new encryption keys; try again in a moment."


def honest(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [message]


async def hostile_room(server: LiveServer, browser: Browser, pages: list[Page],
                       meddler: Meddler) -> tuple[Page, str, GroupChat, GroupChat]:
    """The page and two Python members (Alder, Birch), every key everywhere; from then on
    what goes to the page passes through `meddler` (honest until a test says otherwise)."""
    page = await open_page(browser, pages, server.http_url)
    me = await page.join("circle", pseudonym="Quiet Page")
    meddler.victim, meddler.rewrite = me, honest
    alder = await GroupChat.join(await server.client(), "circle", pseudonym="Alder Finch")
    birch = await GroupChat.join(await server.client(), "circle", pseudonym="Birch Wren")
    ids = [me, alder.client.member or "", birch.client.member or ""]
    await settle(alder, birch)
    for py in (alder, birch):
        await py.keys_from(ids)
    await keys_ready(page, ids[1:])
    await page.wait_for("(ids) => ids.every((id) => document.querySelector("
                        "`#fingerprints dd[data-member='${id}']`))", ids)
    return page, me, alder, birch


async def next_epoch(server: LiveServer, sender: GroupChat, page_member: str) -> GroupChat:
    """Carol joins (the epoch advances) until `sender` has sealed its new key to the page."""
    carol = await GroupChat.join(await server.client(), "circle", pseudonym="Carol Lark")
    await until(lambda: sender.session.epoch == carol.epoch
                and sender.session.holds_our_key(page_member),
                what="the sender's key for the next epoch sealed to the page")
    return carol


async def texts(page: Page) -> list[str]:
    return list(await page.evaluate(TEXTS))


async def notices(page: Page) -> list[str]:
    return list(await page.evaluate(NOTICES))


async def close(*chats: GroupChat) -> None:
    for chat in chats:
        chat.close()
        await chat.client.close()


@pytest_twisted.ensureDeferred
async def test_an_envelope_relabelled_as_another_member_is_refused_and_said_so(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    meddler = Meddler(server)
    page, _, alder, birch = await hostile_room(server, browser, pages, meddler)

    def relabel(m: dict[str, Any]) -> list[dict[str, Any]]:
        if m["type"] == "envelope" and m["from"] == alder.client.member:
            return [{**m, "from": birch.client.member}]
        return [m]
    meddler.rewrite = relabel
    await alder.say("Alder wrote this")
    await log_has(page, REFUSED.format("Birch Wren"))
    meddler.rewrite = honest
    await alder.say("and this, relayed honestly")
    await log_has(page, "and this, relayed honestly")
    assert "Alder wrote this" not in await texts(page)
    await close(alder, birch)


@pytest_twisted.ensureDeferred
async def test_reordered_duplicated_withheld_and_replayed_envelopes(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    """Reordered: both shown, in the room's order. Duplicated or replayed: refused, said so,
    never shown twice. Withheld: gone, and the next one still opens (§11: withholding cannot
    be prevented; on a live connection the page does not say a message is missing)."""
    meddler = Meddler(server)
    page, _, alder, birch = await hostile_room(server, browser, pages, meddler)
    from_alder: list[dict[str, Any]] = []

    def meddle(m: dict[str, Any]) -> list[dict[str, Any]]:
        if m["type"] != "envelope" or m["from"] != alder.client.member:
            return [m]
        from_alder.append(m)
        n = len(from_alder)
        if n == 1:
            return []  # held back
        if n == 2:
            return [m, from_alder[0], m]  # the second, the first, the second again
        if n == 3:
            return []  # withheld for good
        return [m, from_alder[0]]  # and the first replayed much later
    meddler.rewrite = meddle
    for text in ("one", "two", "three", "four"):
        await alder.say(text)
    await log_has(page, "four")
    await caught_up(alder.client)
    shown = await texts(page)
    said = [t for t in shown if t in ("one", "two", "three", "four")]
    assert said == ["one", "two", "four"], shown  # by seq, each once, "three" never
    assert (await notices(page)).count(REFUSED.format("Alder Finch")) == 2
    await close(alder, birch)


@pytest_twisted.ensureDeferred
async def test_an_envelope_delayed_past_its_senders_next_epoch_is_refused_as_too_late(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    meddler = Meddler(server)
    page, me, alder, birch = await hostile_room(server, browser, pages, meddler)
    held: list[dict[str, Any]] = []

    def delay(m: dict[str, Any]) -> list[dict[str, Any]]:
        if m["type"] == "envelope" and m["from"] == alder.client.member and not held:
            held.append(m)
            return []
        return [m]
    meddler.rewrite = delay
    await alder.say("said before the epoch changed")
    carol = await next_epoch(server, alder, me)
    await alder.say("said in the next epoch")
    await log_has(page, "said in the next epoch")  # alder's new key reached the page
    meddler.inject(held[0])
    await log_has(page, TOO_LATE.format("Alder Finch"))
    assert "said before the epoch changed" not in await texts(page)
    await close(alder, birch, carol)


@pytest_twisted.ensureDeferred
async def test_an_old_epochs_sender_key_and_messages_replayed_open_nothing_again(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    """The server keeps alder's sender key and message of one epoch and replays them after
    the next; it also hands the page alder's sender key meant for birch."""
    meddler = Meddler(server)
    page, me, alder, birch = await hostile_room(server, browser, pages, meddler)
    await alder.say("said once in the first epoch")
    await log_has(page, "said once in the first epoch")
    old_key = [m for m in meddler.seen if m["type"] == "direct" and m["from"] == alder.client.member]
    old_message = next(m for m in meddler.seen if m["type"] == "envelope")
    assert old_key, "alder's sender key went to the page"
    birchs: list[dict[str, Any]] = []  # what birch is sent
    follow = birch.client.on_message
    assert follow is not None

    def note(m: dict[str, Any]) -> None:
        birchs.append(m)
        follow(m)
    birch.client.on_message = note
    carol = await next_epoch(server, alder, me)
    await alder.say("said in the next epoch")
    await log_has(page, "said in the next epoch")
    before = await notices(page)
    for m in [*old_key, old_message]:
        meddler.inject(m)
    for_birch = [m for m in birchs if m["type"] == "direct" and m["from"] == alder.client.member]
    assert for_birch, "birch got alder's new key"
    meddler.inject(for_birch[-1])  # redirected: sealed to birch, not to the page
    await alder.say("and after the replays")
    await log_has(page, "and after the replays")
    shown = await texts(page)
    assert shown.count("said once in the first epoch") == 1, shown
    # The replayed key of the epoch alder left behind: refused (e2ee.replay; one of an epoch
    # the page no longer keeps is dropped silently); the replayed message: too late; the key
    # sealed to birch: refused (its signature names birch).
    new = (await notices(page))[len(before):]
    refused, late = REFUSED.format("Alder Finch"), TOO_LATE.format("Alder Finch")
    assert new == [refused, late, refused], new
    await close(alder, birch, carol)


@pytest_twisted.ensureDeferred
async def test_a_ghost_shown_to_the_page_alone_is_announced_and_changes_its_safety_code(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    """The server tells the page of a member nobody else sees (its own keys), without a
    `member_joined`: the page must still say someone joined, list them with a fingerprint,
    and show a safety code that differs from everyone else's."""
    meddler = Meddler(server)
    page, _, alder, birch = await hostile_room(server, browser, pages, meddler)
    honest_code = alder.session.safety_code()
    assert await page.evaluate(CODE) == honest_code == birch.session.safety_code()
    template = meddler.member(alder.client.member or "")
    ghost = {**template, "id": "ghost-listener", "pseudonym": "Ghost Listener", "slot": 99,
             "seat": None, "keys": forged_keys("circle", "ghost-listener", alder.epoch)}
    meddler.inject({"type": "member_updated", "seq": 0, "member": ghost})
    await page.wait_for(FINGERPRINT, "ghost-listener")
    await log_has(page, "Ghost Listener joined.")
    await page.wait_for("(code) => document.getElementById('safety-code').textContent !== code",
                        honest_code)
    assert alder.session.safety_code() == honest_code  # the others' screens did not change
    await close(alder, birch)


@pytest_twisted.ensureDeferred
async def test_a_substituted_key_is_shown_and_the_page_waits_for_new_keys_to_send(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    meddler = Meddler(server)
    page, me, alder, birch = await hostile_room(server, browser, pages, meddler)
    alder_id = alder.client.member or ""
    honest_code = alder.session.safety_code()
    own_print = alder.session.fingerprint(alder_id)
    assert await page.evaluate(FINGERPRINT, alder_id) == own_print
    template = meddler.member(alder_id)
    fake = forged_keys("circle", alder_id, alder.epoch)
    meddler.inject({"type": "member_updated", "seq": 0, "member": {**template, "keys": fake}})
    await log_has(page, "Alder Finch's encryption keys changed. Check the safety code.")
    assert await page.evaluate(FINGERPRINT, alder_id) != own_print
    assert await page.evaluate(CODE) != honest_code
    # Same epoch: whoever held alder's old keys holds the page's chain; nothing goes out.
    await page.do(lambda p: (p.fill("#chat-input", "not before new keys"),
                             p.press("#chat-input", "Enter")))
    await log_has(page, WAIT_FOR_KEYS)
    await caught_up(alder.client)
    assert all(m.text != "not before new keys" for m in alder.messages)
    await close(alder, birch)
    del me


@pytest_twisted.ensureDeferred
async def test_forged_epochs_a_step_back_is_ignored_and_a_leave_without_one_stops_sending(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    meddler = Meddler(server)
    page, me, alder, birch = await hostile_room(server, browser, pages, meddler)
    alder_id = alder.client.member or ""
    template = meddler.member(alder_id)
    # An epoch going backwards changes nothing: the page talks on.
    meddler.inject({"type": "member_updated", "seq": 0, "member": template, "epoch": 1})
    await say(page, "after a step back")
    got = await alder.next_message()
    assert (got.sender, got.text) == (me, "after a step back")
    # Birch "left" and the epoch did not move: birch (still here) would hold the page's
    # chain, so the page sends nothing until the epoch advances, and says why.
    meddler.inject({"type": "member_left", "seq": 0, "member": birch.client.member,
                    "reason": "left", "epoch": alder.epoch})
    await log_has(page, "Birch Wren left.")
    await page.do(lambda p: (p.fill("#chat-input", "not while birch holds my key"),
                             p.press("#chat-input", "Enter")))
    await log_has(page, WAIT_FOR_KEYS)
    await caught_up(alder.client, birch.client)
    for py in (alder, birch):
        assert all(m.text != "not while birch holds my key" for m in py.messages)
    await close(alder, birch)


@pytest_twisted.ensureDeferred
async def test_the_facilitator_console_shows_the_safety_code_and_a_swapped_key(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    """The facilitator reads the safety code aloud for everyone to compare: the console
    shows it, the same as everyone's on an honest server, and says when a key changed."""
    meddler = Meddler(server)
    console = await signed_in_console(server, browser, pages)
    me = await open_room(console)
    meddler.victim, meddler.rewrite = me, honest
    alder = await GroupChat.join(await server.client(), "circle", pseudonym="Alder Finch")
    alder_id = alder.client.member or ""
    await alder.keys_from([me])
    await console.wait_for("(code) => document.getElementById('safety-code').textContent === code",
                           alder.session.safety_code())
    assert await console.evaluate(FINGERPRINT, alder_id) == alder.session.fingerprint(alder_id)
    template = meddler.member(alder_id)
    fake = forged_keys("circle", alder_id, alder.epoch)
    meddler.inject({"type": "member_updated", "seq": 0, "member": {**template, "keys": fake}})
    await log_has(console, "Alder Finch's encryption keys changed. Check the safety code.")
    assert await console.evaluate(CODE) != alder.session.safety_code()
    await close(alder)
