// Every page: the quick exit, and navigation that keeps Hearth to one entry in the tab's history.
// Focus is never scrolled under the sticky header.
//
// Quick exit (the button, or Escape twice within a moment) runs the page's own clean-up
// (the room sends `leave`), clears this tab's session storage and the language cookie,
// blanks the page, and replaces it with the organisation's neutral site. location.replace
// means Back does not return to the room. Internal links marked data-replace also replace
// the current entry, so the history holds one Hearth page at most.

const DOUBLE_ESCAPE_MS = 800;
const beforeExit = [];
let lastEscape = -Infinity;
let exiting = false;

/** Register clean-up to run first on quick exit (it must be quick and must not throw). */
export function onQuickExit(fn) {
  beforeExit.push(fn);
}

export function quickExitUrl() {
  const link = document.getElementById("quick-exit");
  return link ? link.href : "about:blank";
}

export function quickExit() {
  if (exiting) return;
  exiting = true;
  const url = quickExitUrl();
  for (const fn of beforeExit) {
    try {
      fn();
    } catch {
      // clean-up is best effort: leaving fast matters more
    }
  }
  try {
    sessionStorage.clear();
  } catch {
    // storage may be disabled; nothing was kept then
  }
  document.cookie = "hearth_lang=; Path=/; Max-Age=0; SameSite=Strict";
  document.title = "";
  document.body.replaceChildren(); // nothing of the room stays on screen while the next page loads
  location.replace(url);
}

document.addEventListener(
  "keydown",
  (event) => {
    if (event.key !== "Escape") return;
    const now = event.timeStamp;
    if (now - lastEscape <= DOUBLE_ESCAPE_MS) {
      event.preventDefault();
      quickExit();
    } else {
      lastEscape = now;
    }
  },
  true,
);

document.addEventListener("click", (event) => {
  const link = event.target instanceof Element ? event.target.closest("a") : null;
  if (!link || event.defaultPrevented) return;
  if (link.id === "quick-exit") {
    event.preventDefault();
    quickExit();
    return;
  }
  const plain = event.button === 0 && !event.ctrlKey && !event.metaKey && !event.shiftKey && !event.altKey;
  if (plain && link.hasAttribute("data-replace") && link.origin === location.origin) {
    event.preventDefault();
    location.replace(link.href);
  }
});

// The header stays at the top of the window (sticky): whatever is scrolled into view — the
// control the keyboard just focused — stops below it, not under it.
const header = document.querySelector("body > header.top");
if (header && "ResizeObserver" in window) {
  new ResizeObserver(() => {
    document.documentElement.style.scrollPaddingTop = `${header.offsetHeight + 8}px`;
  }).observe(header);
}

// A card's title the page moves the focus to (`data-focus-card`: the help card's) brings the
// whole card into view from its top, just below the header: a focus alone only scrolls as far
// as the title (centred, if it was out of view), which on a small phone leaves the card's edge
// and its first lines above or the emergency number below the screen. After the browser's own
// focus scroll, in the next frame; at once under reduced motion as always (no smooth scroll).
document.addEventListener("focusin", (event) => {
  const title = event.target instanceof Element ? event.target.closest("[data-focus-card]") : null;
  const card = title?.closest(".card");
  if (card) requestAnimationFrame(() => card.scrollIntoView({ block: "start", inline: "nearest" }));
});
