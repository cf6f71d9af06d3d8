// The "Check the encryption" card of the room page and the facilitator console: the room's
// safety code and each member's key fingerprint, as this page's E2EE session computes them over
// the roster the server showed it (docs/e2ee.md §8). A server that shows one person a ghost or a
// swapped key changes that person's code, so the code is read aloud and compared.

/**
 * Show a GroupChat "security" event in #safety-code and #fingerprints.
 * @param {{safetyCode: string, fingerprints: Map<string, string>}} detail
 * @param {{me: string, you: string, nameOf: (id: string) => string}} names
 */
export function showSafety({ safetyCode, fingerprints }, { me, you, nameOf }) {
  document.getElementById("safety-code").textContent = safetyCode;
  const list = document.getElementById("fingerprints");
  list.replaceChildren();
  for (const [id, fingerprint] of fingerprints) {
    const dt = document.createElement("dt");
    dt.textContent = id === me ? you : nameOf(id);
    const dd = document.createElement("dd");
    dd.textContent = fingerprint;
    dd.dataset.member = id;
    list.append(dt, dd);
  }
}
