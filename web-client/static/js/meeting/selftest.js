// @ts-check
// The prejoin self-test: which way this network lets media reach the node. One peer
// connection gathers candidates against the node's STUN and TURN servers (the probe
// credentials that came with the invite check); what it gathers says what got through:
//   udp: a server-reflexive candidate (STUN answered over UDP) or a relay over UDP,
//   tcp: a relay allocated over TCP,
//   tls: a relay allocated over TLS (turns:, possibly on port 443).
// Nothing is sent to anyone but the node.

import { t } from "../i18n.js";

const LIMIT_MS = 8000;

/// Resolves to { udp, tcp, tls } (booleans), or null when the node offers no TURN server.
export async function selfTest(iceServers, limitMs = LIMIT_MS) {
  if (!iceServers?.some((s) => s.urls.some((u) => u.startsWith("turn")))) return null;
  const pc = new RTCPeerConnection({ iceServers, iceCandidatePoolSize: 0 });
  try {
    pc.createDataChannel("probe");
    const done = new Promise((resolve) => {
      pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve(undefined));
      setTimeout(resolve, limitMs);
    });
    await pc.setLocalDescription(await pc.createOffer());
    await done;
    const found = { udp: false, tcp: false, tls: false };
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type !== "local-candidate") return;
      if (s.candidateType === "srflx") found.udp = true;
      if (s.candidateType === "relay") {
        const over = (s.relayProtocol ?? "").toLowerCase();
        if (over in found) found[over] = true;
      }
    });
    return found;
  } finally {
    pc.close();
  }
}

/// A sentence for the person about to join.
export function describe(found) {
  if (!found) return "";
  if (found.udp) return t("network.udp");
  if (found.tcp) return t("network.tcp");
  if (found.tls) return t("network.tls");
  return t("network.none");
}

/// The one path the call will use first, for tests and the console: udp, tcp, tls or none.
export function bestPath(found) {
  if (!found) return "unknown";
  return found.udp ? "udp" : found.tcp ? "tcp" : found.tls ? "tls" : "none";
}
