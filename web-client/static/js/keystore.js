// @ts-check
// The account holder's signing key: generated here with WebCrypto Ed25519, non-extractable
// (the private key can sign but can never be read out, not even by this script), and kept in
// IndexedDB per account. The node certifies its public half after login.

import { post } from "./api.js";
import { base64url } from "./capability.js";

const DB_NAME = "confab";
const STORE = "account-keys";
const RENEW_BEFORE_SECS = 30 * 86400;

function openDb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function withStore(mode, action) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = action(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

const load = (name) => withStore("readonly", (s) => s.get(name));
const save = (name, record) => withStore("readwrite", (s) => s.put(record, name));

/// Logging out: this browser forgets every account's signing key. Links already made keep
/// working (their certificates live on the node until they expire or the account is
/// disabled); the next login makes a new key and has it certified.
export function forgetKeys() {
  return new Promise((resolve) => {
    if (!globalThis.indexedDB) return resolve(undefined);
    const req = indexedDB.deleteDatabase(DB_NAME);
    req.onsuccess = req.onerror = req.onblocked = () => resolve(undefined);
  });
}

export function supported() {
  return Boolean(globalThis.crypto?.subtle && globalThis.indexedDB);
}

/// The key and a live certificate for `me` (the answer of /api/me), creating or renewing
/// either when needed.
export async function signingIdentity(me) {
  const name = me.username.toLowerCase();
  let record = await load(name);
  if (!record) {
    let keyPair;
    try {
      keyPair = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    } catch {
      throw new Error("This browser cannot create Ed25519 signing keys. Use a current Chromium, Firefox or Safari, or `confab invite` on the server.");
    }
    record = { keyPair, certificate: null, certificateId: null, expiresAt: 0 };
    await save(name, record);
  }
  const now = Date.now() / 1000;
  const live = record.certificate && me.certificates.includes(record.certificateId) && record.expiresAt - now > RENEW_BEFORE_SECS;
  if (!live) {
    const raw = new Uint8Array(await crypto.subtle.exportKey("raw", record.keyPair.publicKey));
    const cert = await post("/api/certificate", { public_key: base64url(raw) });
    record = { ...record, certificate: cert.certificate, certificateId: cert.id, expiresAt: cert.expires_at };
    await save(name, record);
  }
  return record;
}
