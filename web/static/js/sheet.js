// On a phone, the conversation is a sheet over the lower part of the map.
//
// Below 40rem (hearth.css) the conversation section is fixed to the bottom of the screen:
// closed, it shows its handle, the last lines, the message box and the reactions, so that
// the map and the conversation are on screen together; open, it rises over the lower part
// of the map, which stays visible above it. The handle says how many messages came while
// it was closed ("3 new"). Focus moving into the sheet (the message box, a question from
// the page) opens it, and focus moving out of it to another control closes it; the page's
// scroll padding keeps whatever the keyboard focuses above the closed sheet. On a wider
// screen the sheet is an ordinary column and none of this shows.

export const PHONE = "(max-width: 40rem) and (min-height: 30rem)"; // hearth.css: a short screen has no sheet

export class ConversationSheet {
  #unread = 0;

  /** `section` (#chat), its `toggle` button, the `count` badge and the chat `log`; `t` for words. */
  constructor({ section, toggle, count, log, t, media = window.matchMedia(PHONE) }) {
    Object.assign(this, { section, toggle, count, log, t, media });
    this.open = false;
    toggle.addEventListener("click", () => this.setOpen(!this.open));
    section.addEventListener("focusin", (event) => {
      if (event.target !== toggle && !this.open && this.media.matches) this.setOpen(true);
    });
    // Focus gone to a control outside (not merely out of the window): the sheet would hide it.
    section.addEventListener("focusout", (event) => {
      const to = event.relatedTarget;
      if (this.open && this.media.matches && to instanceof Node && !section.contains(to)) this.setOpen(false);
    });
    new ResizeObserver(() => this.#padScroll()).observe(section);
    new MutationObserver((records) => this.#added(records)).observe(log, { childList: true });
    media.addEventListener("change", () => this.#render());
    this.#render();
  }

  setOpen(open) {
    this.open = open;
    if (open) this.#unread = 0;
    this.#render();
    this.log.scrollTop = this.log.scrollHeight; // open or closed, the latest lines show
  }

  get unread() {
    return this.#unread;
  }

  #added(records) {
    if (this.open || !this.media.matches) return;
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node instanceof Element && node.classList.contains("msg") && !node.classList.contains("mine")) {
          this.#unread += 1;
        }
      }
    }
    this.log.scrollTop = this.log.scrollHeight; // the peek shows the latest line
    this.#render();
  }

  /** What is scrolled into view (a focused control) stops above the closed sheet. */
  #padScroll() {
    const pad = this.media.matches && !this.open ? `${this.section.offsetHeight + 8}px` : "";
    document.documentElement.style.scrollPaddingBottom = pad;
  }

  #render() {
    const phone = this.media.matches;
    const open = this.open || !phone;
    this.section.classList.toggle("open", open);
    this.toggle.setAttribute("aria-expanded", String(open));
    const n = this.#unread;
    this.count.hidden = n === 0;
    this.count.textContent = n === 0 ? "" : this.t(n === 1 ? "sheet.unread_one" : "sheet.unread", { n });
    this.#padScroll();
  }
}
