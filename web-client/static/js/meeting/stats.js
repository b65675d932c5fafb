// @ts-check
// Reading WebRTC statistics (`RTCPeerConnection.getStats()`) into what a person can act on:
// which path media takes, and for one participant's media the resolution, frame rate,
// bitrate, loss, round trip and codec; for our own uplink, each simulcast layer. Rates need
// two reports: a `Meter` keeps the previous counters per stream.

import { t } from "../i18n.js";

/**
 * @typedef {{ type?: string, address?: string, port?: number, protocol?: string, relayProtocol?: string }} Candidate
 * @typedef {{ local: Candidate | null, remote: Candidate | null, rtt: number | null }} Path
 * @typedef {{ width: number, height: number, fps: number | null, kbps: number | null,
 *   lossPercent: number | null, jitterMs: number | null, codec: string | null,
 *   silent: boolean, froze: boolean }} Incoming
 * @typedef {{ rid: string, width: number, height: number, fps: number | null, kbps: number | null,
 *   active: boolean, limitedBy: string | null, resentPercent: number | null }} OutgoingLayer
 */

/**
 * The selected candidate pair of a report, or the nominated one where the browser names none.
 * @param {RTCStatsReport} report
 * @returns {any}
 */
export function selectedPair(report) {
  for (const s of report.values()) {
    if (s.type === "transport" && s.selectedCandidatePairId) return report.get(s.selectedCandidatePairId) ?? null;
  }
  for (const s of report.values()) {
    if (s.type === "candidate-pair" && (s.selected || (s.nominated && s.state === "succeeded"))) return s;
  }
  return null;
}

/** @param {any} c @returns {Candidate | null} */
function candidate(c) {
  return c ? { type: c.candidateType, address: c.address ?? c.ip, port: c.port, protocol: c.protocol, relayProtocol: c.relayProtocol } : null;
}

/**
 * The path of a connection: both ends of the selected pair and its round trip (seconds).
 * @param {RTCStatsReport} report
 * @returns {Path | null}
 */
export function pathOf(report) {
  const pair = selectedPair(report);
  if (!pair) return null;
  return { local: candidate(report.get(pair.localCandidateId)), remote: candidate(report.get(pair.remoteCandidateId)), rtt: pair.currentRoundTripTime ?? null };
}

/**
 * In words: "direct", "relayed, TURN over TCP", "through the meeting server (SFU) over UDP"…
 * @param {Path | null} path
 * @param {boolean} viaSfu
 */
export function describePath(path, viaSfu) {
  if (!path?.local) return t("path.not_connected");
  const transport = (path.local.protocol ?? "udp").toUpperCase();
  if (path.local.type === "relay") {
    const turn = (path.local.relayProtocol ?? "udp").toUpperCase();
    return viaSfu ? t("path.sfu_relayed", { turn }) : t("path.relayed", { turn });
  }
  if (viaSfu) return t("path.sfu", { transport });
  return t("path.direct", { transport });
}

/**
 * A connection's quality, for the dot on each tile: "lost" when nothing arrived since the
 * last look although something should have, "poor" with heavy loss, a long round trip or
 * a freeze since the last look, "fair" with some loss or a longer round trip, else "good".
 * @param {number | null} lossPercent
 * @param {number | null} rttSeconds
 * @param {{ silent?: boolean, froze?: boolean }} [seen]
 */
export function quality(lossPercent, rttSeconds, { silent = false, froze = false } = {}) {
  if (silent) return "lost";
  const loss = lossPercent ?? 0;
  const rtt = rttSeconds ?? 0;
  if (froze || loss >= 8 || rtt >= 0.5) return "poor";
  if (loss >= 2 || rtt >= 0.25) return "fair";
  return "good";
}

/** Remembers counters between reports to turn them into rates. */
export class Meter {
  constructor() {
    /** @type {Map<string, { at: number, bytes: number, frames: number, received: number, lost: number, freezes: number, resent: number }>} */
    this.last = new Map();
  }

  /**
   * Bitrate (kbit/s), frame rate and loss (% of packets since the last sample) of one stream.
   * @param {any} s an inbound-rtp or outbound-rtp stats object
   */
  rates(s) {
    const now = s.timestamp ?? performance.now();
    const bytes = s.bytesReceived ?? s.bytesSent ?? 0;
    const frames = s.framesDecoded ?? s.framesEncoded ?? 0;
    const received = s.packetsReceived ?? s.packetsSent ?? 0;
    const lost = s.packetsLost ?? 0;
    const freezes = s.freezeCount ?? 0;
    const resent = s.retransmittedPacketsSent ?? 0;
    const before = this.last.get(s.id);
    this.last.set(s.id, { at: now, bytes, frames, received, lost, freezes, resent });
    if (!before || now <= before.at) return { kbps: null, fps: s.framesPerSecond ?? null, lossPercent: null, packets: null, froze: false, resentPercent: null };
    const secs = (now - before.at) / 1000;
    const got = received - before.received;
    const missed = Math.max(0, lost - before.lost);
    return {
      kbps: Math.round(((bytes - before.bytes) * 8) / 1000 / secs),
      fps: s.framesPerSecond ?? Math.round((frames - before.frames) / secs),
      lossPercent: got + missed > 0 ? Math.round((1000 * missed) / (got + missed)) / 10 : 0,
      packets: got,
      froze: freezes > before.freezes,
      // What we sent again because the other end asked for it: our uplink's loss as seen
      // before repair (a relay's receiver reports count repaired packets as received).
      resentPercent: got > 0 ? Math.round((1000 * Math.max(0, resent - before.resent)) / got) / 10 : 0,
    };
  }

  /**
   * What arrives on the inbound video stream `mid` (or the only one), with the audio
   * stream's loss when there is no video; `silent` when neither brought a packet since the
   * last call although one of them had before, `froze` when the video froze since then.
   * @param {RTCStatsReport} report
   * @param {(mid: string | undefined, kind: string) => boolean} [wanted] which inbound streams are this participant's
   * @returns {Incoming}
   */
  incoming(report, wanted = () => true) {
    let video = null;
    let audio = null;
    for (const s of report.values()) {
      if (s.type !== "inbound-rtp" || !wanted(s.mid, s.kind)) continue;
      if (s.kind === "video" && (!video || (s.bytesReceived ?? 0) > (video.bytesReceived ?? 0))) video = s;
      if (s.kind === "audio") audio = s;
    }
    const main = video ?? audio;
    if (!main) return { width: 0, height: 0, fps: null, kbps: null, lossPercent: null, jitterMs: null, codec: null, silent: false, froze: false };
    const rates = this.rates(main);
    const other = video && audio ? this.rates(audio) : null;
    const packets = [rates.packets, other?.packets].filter((p) => p != null);
    const codec = main.codecId ? report.get(main.codecId)?.mimeType?.replace(/^(video|audio)\//, "") ?? null : null;
    return {
      width: video?.frameWidth ?? 0,
      height: video?.frameHeight ?? 0,
      fps: video ? rates.fps : null,
      kbps: rates.kbps,
      lossPercent: rates.lossPercent,
      jitterMs: main.jitter != null ? Math.round(main.jitter * 1000) : null,
      codec,
      silent: packets.length > 0 && packets.every((p) => p === 0) && (main.packetsReceived ?? 0) + (other ? audio.packetsReceived ?? 0 : 0) > 0,
      froze: rates.froze,
    };
  }

  /**
   * Our own video, per simulcast layer (or the one stream), as we send it.
   * @param {RTCStatsReport} report
   * @returns {OutgoingLayer[]}
   */
  outgoing(report) {
    /** @type {OutgoingLayer[]} */
    const layers = [];
    for (const s of report.values()) {
      if (s.type !== "outbound-rtp" || s.kind !== "video") continue;
      const rates = this.rates(s);
      layers.push({
        rid: s.rid ?? "",
        width: s.frameWidth ?? 0,
        height: s.frameHeight ?? 0,
        fps: rates.fps,
        kbps: rates.kbps,
        active: s.active !== false,
        limitedBy: s.qualityLimitationReason && s.qualityLimitationReason !== "none" ? s.qualityLimitationReason : null,
        resentPercent: rates.resentPercent,
      });
    }
    return layers.sort((a, b) => a.height - b.height);
  }
}

/**
 * Our uplink's loss, from what the other end reports back (remote-inbound-rtp), in %: the
 * worst of our streams (an average would let paused simulcast layers, which lose nothing,
 * hide the loss of those that flow).
 * @param {RTCStatsReport} report
 */
export function uplinkLoss(report) {
  let worst = null;
  for (const s of report.values()) {
    if (s.type === "remote-inbound-rtp" && s.fractionLost != null) worst = Math.max(worst ?? 0, s.fractionLost);
  }
  return worst == null ? null : Math.round(1000 * worst) / 10;
}
