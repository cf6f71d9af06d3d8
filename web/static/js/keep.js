// What a reload keeps, on this device only (docs/client.md, "What a reload keeps").
//
// A reload or a language switch in the same tab resumes the same member (the session token in
// sessionStorage). So that it also stays the same E2EE identity (the others are not told "keys
// changed") and the person still sees their own conversation, this tab keeps, per room:
//
//   IndexedDB "hearth", store "keep", key "<tab id>/<room>":
//       the identity's private keys as non-extractable CryptoKeys (the browser stores them; no
//       script, this one included, can read them out), their public halves, the member id,
//       and a non-extractable AES-256-GCM key for the conversation;
//   sessionStorage "hearth.log.<room>": the conversation (the messages shown, with what a
//       report needs), sealed under that AES key.
//
// The tab id is a random name in sessionStorage, so another tab never picks these up. Nothing
// here holds an epoch key or a sender key: after a reload the room rotates (a resume advances
// the epoch) and everyone seals fresh keys to the page. Leaving, being removed, the end of the
// session and quick exit erase it all; a record a closed tab left behind is erased by the next
// room page opened after MAX_AGE_MS. Without IndexedDB (disabled storage) nothing is kept and a
// reload is a new identity, as before.

import { b64decode, b64encode, Identity } from "./e2ee.js";

const DB = "hearth";
const STORE = "keep";
const TAB = "hearth.tab";
const LOG_PREFIX = "hearth.log.";
export const LOG_LIMIT = 200; // messages kept for a reload, the newest
const MAX_AGE_MS = 12 * 60 * 60 * 1000;
const OPEN_WAIT_MS = 2000; // storage that does not answer by then keeps nothing: the room must not wait

let openDb = null; // the one connection this page holds, closed before the database is deleted

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function database() {
  openDb ??= new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => {
      const db = req.result;
      db.onversionchange = () => db.close(); // another tab's quick exit deletes the database
      resolve(db);
    };
    req.onerror = () => reject(req.error);
    req.onblocked = () => reject(new Error("blocked"));
  });
  openDb.catch(() => (openDb = null));
  return openDb;
}

async function store(mode, fn) {
  const db = await database();
  const tx = db.transaction(STORE, mode);
  const result = await request(fn(tx.objectStore(STORE)));
  await new Promise((resolve, reject) => {
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
  return result;
}

function tabId(storage) {
  let id = storage.getItem(TAB);
  if (!id) {
    id = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
    storage.setItem(TAB, id);
  }
  return id;
}

/** This tab's keepsake for one room. Every method settles; storage failures keep nothing. */
export class Keep {
  #record = null;

  constructor(room, key, storage) {
    this.room = room;
    this.key = key;
    this.storage = storage;
  }

  /** Open (and erase what closed tabs left behind longer than MAX_AGE_MS ago); never waits
   *  longer than OPEN_WAIT_MS. */
  static async open(room, storage = window.sessionStorage) {
    let timer;
    const late = new Promise((resolve) => {
      timer = setTimeout(() => resolve(new Keep(room, null, storage)), OPEN_WAIT_MS);
    });
    try {
      return await Promise.race([Keep.#open(room, storage), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  static async #open(room, storage) {
    let key = null;
    try {
      key = `${tabId(storage)}/${room}`;
      const now = Date.now();
      await store("readwrite", (s) => {
        const cursor = s.openCursor();
        cursor.onsuccess = () => {
          const at = cursor.result;
          if (!at) return;
          if (at.key !== key && !(now - at.value.savedAt < MAX_AGE_MS)) at.delete();
          at.continue();
        };
        return cursor;
      });
    } catch {
      // no IndexedDB: nothing is kept
    }
    const keep = new Keep(room, key, storage);
    if (key !== null) {
      try {
        keep.#record = (await store("readonly", (s) => s.get(key))) ?? null;
      } catch {
        keep.#record = null;
      }
    }
    return keep;
  }

  /** The identity kept for `member` in this room, or null. */
  identity(member) {
    const record = this.#record;
    if (!record || record.member !== member) return null;
    try {
      return Identity.fromStored(record.identity);
    } catch {
      return null;
    }
  }

  /** Keep `identity` (non-extractable CryptoKeys) for `member`, with a fresh conversation key. */
  async saveIdentity(member, identity) {
    if (this.key === null) return;
    try {
      const logKey = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
      const record = { member, identity: identity.toStored(), logKey, savedAt: Date.now() };
      await store("readwrite", (s) => s.put(record, this.key));
      this.#record = record;
      this.storage.removeItem(LOG_PREFIX + this.room); // sealed under a key that is gone
    } catch {
      this.#record = null;
    }
  }

  /** The kept conversation (oldest first), or [] when there is none or it does not open. */
  async log() {
    const sealed = this.storage.getItem(LOG_PREFIX + this.room);
    if (!sealed || !this.#record) return [];
    try {
      const bytes = b64decode(sealed);
      const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: bytes.subarray(0, 12) }, this.#record.logKey, bytes.subarray(12));
      const entries = JSON.parse(new TextDecoder().decode(plain));
      return Array.isArray(entries) ? entries : [];
    } catch {
      return [];
    }
  }

  /** Seal and keep the conversation (the newest LOG_LIMIT entries). */
  async saveLog(entries) {
    if (!this.#record) return;
    try {
      const iv = crypto.getRandomValues(new Uint8Array(12));
      const plain = new TextEncoder().encode(JSON.stringify(entries.slice(-LOG_LIMIT)));
      const sealed = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv }, this.#record.logKey, plain));
      const out = new Uint8Array(12 + sealed.length);
      out.set(iv);
      out.set(sealed, 12);
      this.storage.setItem(LOG_PREFIX + this.room, b64encode(out));
      if (Date.now() - this.#record.savedAt > MAX_AGE_MS / 4) {
        this.#record.savedAt = Date.now(); // still in use: not a closed tab's leftover
        await store("readwrite", (s) => s.put(this.#record, this.key));
      }
    } catch {
      // storage full or gone: the conversation is not kept, the room goes on
    }
  }

  /**
   * Another tab took the member over: it resumed with this tab's token, which only a copy of
   * this tab's session storage holds (the browser's "duplicate tab", or a window this page
   * opened). That tab holds the same tab name, so it uses the same record: this tab lets go of
   * it without erasing it, and takes a new name, so that nothing it does later (a join, a
   * leave) touches the other tab's keepsake.
   */
  letGo() {
    this.#record = null;
    this.key = null;
    try {
      this.storage.removeItem(LOG_PREFIX + this.room);
      this.storage.removeItem(TAB);
    } catch {
      // storage disabled: nothing was kept
    }
  }

  /** Leaving, removed, ended: erase this room's identity and conversation. */
  async forget() {
    this.#record = null;
    try {
      this.storage.removeItem(LOG_PREFIX + this.room);
    } catch {
      // storage disabled: nothing was kept
    }
    if (this.key === null) return;
    try {
      await store("readwrite", (s) => s.delete(this.key));
    } catch {
      // nothing was kept
    }
  }
}

/**
 * Quick exit: erase every tab's keepsake at once (the page is about to go, so this only starts
 * the deletion; the browser finishes it). sessionStorage is cleared by the quick exit itself.
 */
export function forgetEverything() {
  const held = openDb;
  openDb = null;
  held?.then((db) => db.close()).catch(() => {});
  try {
    indexedDB.deleteDatabase(DB);
  } catch {
    // no IndexedDB: nothing was kept
  }
}
