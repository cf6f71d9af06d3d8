"""A reload or a language switch keeps the person's E2EE identity and their conversation.

Issue 21, point 2: before, a reload silently emptied the conversation and told everyone else
"…keys changed… check the safety code". Now the tab keeps, on the device only, the identity
as non-extractable keys in IndexedDB and the conversation sealed in sessionStorage
(web/static/js/keep.js); the others see "reconnected" and no key change; leaving and quick
exit erase both.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from hearth.client.groupchat import GroupChat
from tests.browser.harness import Browser, Page, chat_both_ways, keys_ready, log_has, open_page
from tests.support.live import LiveServer

pytestmark = pytest.mark.browser

STATE = "(state) => document.getElementById('app').dataset.state === state"
KEPT = """async () => {
  const dbs = await indexedDB.databases();
  if (!dbs.some((d) => d.name === 'hearth')) return null;
  return new Promise((resolve, reject) => {
    const req = indexedDB.open('hearth');
    req.onerror = () => reject(req.error);
    req.onsuccess = () => {
      const db = req.result;
      if (!db.objectStoreNames.contains('keep')) { db.close(); resolve([]); return; }
      const all = db.transaction('keep').objectStore('keep').getAll();
      all.onsuccess = () => {
        db.close();
        resolve(all.result.map((r) => ({
          member: r.member,
          extractable: [r.identity.dh.extractable, r.identity.sig.extractable, r.logKey.extractable],
          kinds: [r.identity.dh.algorithm.name, r.identity.sig.algorithm.name, r.logKey.algorithm.name],
        })));
      };
    };
  });
}"""
MY_FINGERPRINT = "(me) => document.querySelector(`#fingerprints dd[data-member='${me}']`)?.textContent"


async def joined_pair(server: LiveServer, page: Page, name: str) -> tuple[str, GroupChat]:
    member = await page.join("circle", pseudonym=name)
    py = await GroupChat.join(await server.client(), "circle", pseudonym="Python Pal")
    assert py.client.member is not None
    await keys_ready(page, [py.client.member])
    await py.keys_from([member])
    return member, py


@pytest_twisted.ensureDeferred
async def test_a_reload_and_a_language_switch_keep_the_identity_and_the_conversation(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    page = await open_page(browser, pages, server.http_url)
    member, py = await joined_pair(server, page, "Steady Heron")
    observer = await open_page(browser, pages, server.http_url)  # another person's page
    await observer.join("circle", pseudonym="Watching Fox")
    await chat_both_ways(page, py, member, "before the reload")
    fingerprint = await page.evaluate(MY_FINGERPRINT, member)
    assert fingerprint and fingerprint == py.session.fingerprint(member)
    [kept] = await page.evaluate(KEPT)
    assert kept == {"member": member, "extractable": [False, False, False],
                    "kinds": ["X25519", "Ed25519", "AES-GCM"]}
    sealed = await page.evaluate("() => sessionStorage.getItem('hearth.log.circle')")
    assert sealed and "before the reload" not in sealed  # the conversation is kept sealed
    assert "this conversation (encrypted)" in await page.evaluate(
        "() => document.getElementById('kept-note').textContent")

    for how in ("reload", "language"):
        py.client.inbox.clear()
        if how == "reload":
            await page.do(lambda p: p.reload())
        else:
            await page.do(lambda p: p.click("[data-lang-link][hreflang='es'], [data-lang-link][lang='es']"))
            await page.do(lambda p: p.wait_for_url("**lang=es**"))
        # The conversation is back at once, before anything new is said.
        await log_has(page, "browser says before the reload")
        await log_has(page, "python says before the reload")
        await page.wait_for(STATE, "joined")
        assert await page.evaluate("() => document.getElementById('app').dataset.me") == member
        # The others: "reconnected", never "keys changed"; the same fingerprint and safety code.
        back = await py.client.next("member_resumed")
        assert back["member"]["id"] == member
        await chat_both_ways(page, py, member, f"after the {how}")
        assert py.session.last_changes is not None and py.session.last_changes.keys_changed == ()
        assert py.session.fingerprint(member) == fingerprint
        await page.wait_for(
            "([me, fp]) => document.querySelector(`#fingerprints dd[data-member='${me}']`)"
            "?.textContent === fp", [member, fingerprint])
        code = py.session.safety_code()
        await page.wait_for("(code) => document.getElementById('safety-code').textContent === code",
                            code)
        assert not py.rejected
        # No warning at all on either page: no "keys changed", nothing refused; the other
        # person's page says "reconnected".
        await log_has(observer, "Steady Heron reconnected.")
        for p in (page, observer):
            assert await p.evaluate("() => document.querySelectorAll('#chat-log .warn').length") == 0
        if how == "reload":
            # A message from before the reload can still be reported: its franking proof was kept.
            await page.evaluate("""() => [...document.querySelectorAll('.msg-report')]
              .find((b) => b.closest('.msg').textContent.includes('python says before the reload'))
              .click()""")
            await page.do(lambda p: p.click("#report-form button[type=submit]"))
            await log_has(page, "The facilitators have your report.")
    await py.client.close()


async def kept_everywhere(page: Page) -> Any:
    return await page.evaluate(KEPT)


@pytest.mark.parametrize("how", ["leave", "quick exit"])
@pytest_twisted.ensureDeferred
async def test_leaving_and_quick_exit_erase_what_was_kept(
        server: LiveServer, browser: Browser, pages: list[Page], neutral_site: str, how: str) -> None:
    page = await open_page(browser, pages, server.http_url)
    member, py = await joined_pair(server, page, "Quiet Wren")
    await chat_both_ways(page, py, member, "to be forgotten")
    assert [k["member"] for k in await kept_everywhere(page)] == [member]
    if how == "leave":
        await page.do(lambda p: p.click("#leave"))
        await page.wait_for(STATE, "left")
        await page.wait_for("""async () => {
          const dbs = await indexedDB.databases();
          if (!dbs.some((d) => d.name === 'hearth')) return true;
          return new Promise((resolve) => {
            const r = indexedDB.open('hearth');
            r.onsuccess = () => {
              const db = r.result;
              const all = db.transaction('keep').objectStore('keep').count();
              all.onsuccess = () => { db.close(); resolve(all.result === 0); };
            };
          });
        }""")
        assert await page.evaluate("() => sessionStorage.getItem('hearth.log.circle')") is None
    else:
        await page.do(lambda p: p.click("#quick-exit"))
        await page.do(lambda p: p.wait_for_url(neutral_site))
        await page.goto("/")
        assert await page.evaluate("() => sessionStorage.length") == 0
        await page.wait_for("async () => !(await indexedDB.databases()).some((d) => d.name === 'hearth')")
    await py.client.close()


@pytest_twisted.ensureDeferred
async def test_a_duplicated_tab_takes_the_member_over_and_keeps_what_was_kept(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    """A tab opened from the room page (the browser's "duplicate tab", or window.open) starts
    with a copy of its session storage: it resumes the same member, and the first tab is told
    "another tab". The first tab must let go of the keepsake without erasing it: the second
    tab, reloaded, is still the same identity with the same conversation."""
    first = await open_page(browser, pages, server.http_url)
    member, py = await joined_pair(server, first, "Two Tabs")
    await chat_both_ways(first, py, member, "in the first tab")
    fingerprint = py.session.fingerprint(member)

    def duplicate(p: Any) -> Any:
        with p.context.expect_page() as opened:
            p.evaluate("() => { window.open(window.location.href); }")
        return opened.value
    popup = await first.do(duplicate)
    second = Page(browser, first.context, popup, server.http_url, first.recorder)
    await second.wait_for(STATE, "joined")
    assert await second.evaluate("() => document.getElementById('app').dataset.me") == member
    await first.wait_for(STATE, "elsewhere")
    await log_has(second, "python says in the first tab")
    await chat_both_ways(second, py, member, "in the second tab")

    py.client.inbox.clear()
    await second.do(lambda p: p.reload())
    await second.wait_for(STATE, "joined")
    assert await second.evaluate("() => document.getElementById('app').dataset.me") == member
    await log_has(second, "python says in the first tab")
    await log_has(second, "browser says in the second tab")
    await chat_both_ways(second, py, member, "after the reload")
    assert py.session.last_changes is not None and py.session.last_changes.keys_changed == ()
    assert py.session.fingerprint(member) == fingerprint
    # The first tab is no longer the member: a reload there goes to the join page.
    await first.do(lambda p: p.reload())
    await first.do(lambda p: p.wait_for_url("**/join/circle*"))
    await py.client.close()


RECORD_LOG_ADDITIONS = """
window.__logAdditions = [];
new MutationObserver((records) => {
  for (const r of records) {
    if (r.target.id !== 'chat-log') continue;
    for (const node of r.addedNodes) {
      if (node.nodeType !== 1) continue;
      window.__logAdditions.push({ text: node.querySelector('.text')?.textContent ?? node.textContent,
                                   busy: r.target.getAttribute('aria-busy') === 'true' });
    }
  }
}).observe(document, { childList: true, subtree: true });
"""


@pytest_twisted.ensureDeferred
async def test_the_conversation_a_reload_brings_back_is_not_read_out_again(
        server: LiveServer, browser: Browser, pages: list[Page]) -> None:
    """The chat log is a live region: what a reload puts back (up to 200 lines the person has
    already read) goes in while the log is busy, so a screen reader does not read it all out
    again; what arrives afterwards is announced as usual."""
    page = await open_page(browser, pages, server.http_url)
    member, py = await joined_pair(server, page, "Listening Jay")
    for n in range(3):
        await chat_both_ways(page, py, member, f"line {n}")
    await page.do(lambda p: p.context.add_init_script(RECORD_LOG_ADDITIONS))
    await page.do(lambda p: p.reload())
    await page.wait_for(STATE, "joined")
    await log_has(page, "python says line 2")
    await py.say("new after the reload")
    await log_has(page, "new after the reload")
    await page.wait_for("() => document.getElementById('chat-log').getAttribute('aria-busy') !== 'true'")
    added = await page.evaluate("() => window.__logAdditions")
    restored = [a for a in added if "line" in a["text"]]
    assert len(restored) == 6 and all(a["busy"] for a in restored), added
    [new] = [a for a in added if a["text"] == "new after the reload"]
    assert not new["busy"]
    await py.client.close()
