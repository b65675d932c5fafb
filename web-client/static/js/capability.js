// @ts-check
// Invites, signed in this browser. The layout matches keys/src/invite.rs and
// docs/capabilities.md byte for byte; the node verifies what this file signs.

const INVITE_DOMAIN = new TextEncoder().encode("confab/invite/v1\0");
const CERT_PREFIX = "cfc1.";
const INVITE_PREFIX = "cfi1.";

export function base64url(bytes) {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function fromBase64url(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const u8 = (n) => Uint8Array.of(n);

function u16(n) {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setUint16(0, n);
  return b;
}

function u64(n) {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n));
  return b;
}

/// The fields of a certificate a browser needs: its window, to keep invites inside it.
export function readCertificate(text) {
  if (!text.startsWith(CERT_PREFIX)) throw new Error("not an account certificate");
  const bytes = fromBase64url(text.slice(CERT_PREFIX.length));
  const view = new DataView(bytes.buffer);
  return {
    bytes,
    notBefore: Number(view.getBigUint64(82)),
    expires: Number(view.getBigUint64(90)),
  };
}

/// Signs an invite for `room` with the account's private key, under `certificateText`.
/// `role` is "guest" or "host"; times are Unix seconds.
export async function signInvite(privateKey, certificateText, { room, role, notBefore, expires }) {
  const cert = readCertificate(certificateText);
  const roomBytes = new TextEncoder().encode(room);
  const id = crypto.getRandomValues(new Uint8Array(16));
  const unsigned = concat([
    u8(1), // version
    u8(2), // kind: invite
    u16(cert.bytes.length),
    cert.bytes,
    id,
    u64(notBefore),
    u64(expires),
    u8(role === "host" ? 1 : 0),
    u8(roomBytes.length),
    roomBytes,
  ]);
  const signature = await crypto.subtle.sign({ name: "Ed25519" }, privateKey, concat([INVITE_DOMAIN, unsigned]));
  return INVITE_PREFIX + base64url(concat([unsigned, new Uint8Array(signature)]));
}
