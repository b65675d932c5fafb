// @ts-check
// Notices that media stopped arriving on every connection at once. That is what a change of
// network (Wi-Fi to mobile data, a new address) looks like from a page: browsers announce
// it no other way, our WebSocket stays "open" on the old address until TCP gives up, and
// ICE calls the connections "disconnected" only seconds later (7 s measured in Chromium).
// A stall is only a question to ask: the call then pings the node (`Signaling.probe`), and
// only a node that does not answer either means the network is gone.

/// Everything we receive silent this long, after it flowed, is a stall: at 50 audio packets
/// a second from every speaker, random loss never does this; a path that is gone does. More
/// than DTX's 400 ms between frames (a browser's own, or the relay's for a thin downlink)
/// with our 100 ms of polling on top, so that a meeting of the silent is no stall.
export const STALL_MS = 550;

/// How often the call looks (reading the receivers' synchronization sources is cheap).
export const FLOW_EVERY_MS = 100;

export class Flow {
  constructor() {
    /** The newest packet time seen, as the receivers report it (their clock, any base). */
    this.newest = 0;
    /** When (our clock, ms) that figure last moved: something arrived then. */
    this.movedAt = 0;
    /** Everything has been silent for `STALL_MS`, and has not flowed since. */
    this.stalled = false;
  }

  /// `newest`: the latest packet time over every receiver now; `now`: our clock (ms).
  /// True once, when a stall begins.
  update(newest, now) {
    // A new connection's figures may be lower than the old one's: any change is flow.
    if (newest !== this.newest) {
      this.newest = newest;
      this.movedAt = now;
      this.stalled = false;
      return false;
    }
    if (this.stalled || this.newest === 0 || now - this.movedAt < STALL_MS) return false;
    this.stalled = true;
    return true;
  }
}

/// The latest time any of `pcs`' receivers got a packet (0: none ever).
export function newestPacket(/** @type {RTCPeerConnection[]} */ pcs) {
  let newest = 0;
  for (const pc of pcs) {
    for (const receiver of pc.getReceivers()) {
      for (const source of receiver.getSynchronizationSources?.() ?? []) newest = Math.max(newest, source.timestamp);
    }
  }
  return newest;
}

/// How long, after our network changed, we wait for the browser to learn its new address.
export const NEW_ADDRESS_WAIT_MS = 4_000;

/// The addresses of the host candidates the browser gathers now (UDP; names where it hides
/// them), from a throwaway connection that talks to nobody: all it finds within `limit` ms,
/// or as soon as one passes `enough`.
export async function hostAddresses(limit = 300, enough = (/** @type {string} */ _address) => false) {
  const pc = new RTCPeerConnection();
  try {
    pc.createDataChannel("probe");
    /** @type {string[]} */
    const found = [];
    const gathered = new Promise((resolve) => {
      pc.onicecandidate = ({ candidate }) => {
        if (!candidate) return resolve(null);
        if (candidate.type !== "host" || candidate.protocol !== "udp" || !candidate.address) return;
        found.push(candidate.address);
        if (enough(candidate.address)) resolve(null);
      };
      setTimeout(resolve, limit);
    });
    await pc.setLocalDescription();
    await gathered;
    return found;
  } catch {
    return [];
  } finally {
    pc.close();
  }
}

/// Waits until the browser gathers a host address not in `before` (our addresses before a
/// change), at most `limit` ms: the new addresses, or null if none came.
export async function newAddress(/** @type {string[]} */ before, /** @type {number} */ limit) {
  const start = performance.now();
  const fresh = (/** @type {string} */ address) => !before.includes(address);
  while (performance.now() - start < limit) {
    const now = (await hostAddresses(150, fresh)).filter(fresh);
    if (now.length) return now;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return null;
}
