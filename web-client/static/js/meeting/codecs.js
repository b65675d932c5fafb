// @ts-check
// Which codecs our connections offer first. Audio goes as RED (RFC 2198) where the browser
// has it: each packet also carries the previous one, so a single lost packet costs no sound
// (Chromium negotiates `red/48000/2` but sends it only when it is listed first). Opus keeps
// its in-band FEC (`useinbandfec=1`, the browsers' default) beneath it.

import { log } from "./log.js";

/// The browser's audio codecs with RED first, or null when it has no RED.
export function audioWithRedFirst() {
  const codecs = RTCRtpReceiver.getCapabilities?.("audio")?.codecs ?? [];
  const red = codecs.filter((c) => c.mimeType.toLowerCase() === "audio/red");
  if (!red.length) return null;
  return [...red, ...codecs.filter((c) => c.mimeType.toLowerCase() !== "audio/red")];
}

/// Puts `codecs` in the order of preference on `transceiver`, if the browser lets us.
export function prefer(/** @type {RTCRtpTransceiver} */ transceiver, codecs) {
  if (!codecs?.length || !transceiver.setCodecPreferences) return;
  try {
    transceiver.setCodecPreferences(codecs);
  } catch (e) {
    log("warn", "could not set the codecs' order", e);
  }
}
