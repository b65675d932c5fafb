// @ts-check
// The connection to the node's SFU, used once the meeting is past the mesh threshold: one
// RTCPeerConnection that sends our audio and video and receives the others' on a fixed
// number of receive-only slots. The node's relay answers our offer once and never offers
// itself; as people come and go it tells us which participant each slot now carries
// (`sfu-slots`), and which of our simulcast layers anyone receives (`sfu-layers`): we pause
// the others, so neither our encoder nor our uplink spends anything on them.

import { log } from "./log.js";
import * as protocol from "./protocol.js";

/// Receive slots per kind: how many others we can hear and see at once through the SFU.
export const SFU_SLOTS = 9;

/// Our camera as three VP8 encodings; the SFU forwards each subscriber the one that fits the
/// tile it is shown in and its bandwidth. (Browsers drop the upper layers by themselves
/// when the camera's resolution is too low for them.)
export const SIMULCAST = [
  { rid: "l", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: "m", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: "h", scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

export class SfuLink {
  constructor({ local, iceServers, send, onStreams }) {
    this.local = local;
    this.send = send;
    this.onStreams = onStreams;
    this.pc = new RTCPeerConnection({ iceServers, bundlePolicy: "max-bundle" });
    this.tracks = new Map(); // mid → remote track
    this.slots = []; // [{mid, participant, kind}]
    this.pc.ontrack = ({ transceiver, track }) => {
      this.tracks.set(transceiver.mid, track);
      track.onunmute = () => this.publish();
      this.publish();
    };
    this.pc.onconnectionstatechange = () => log("info", `sfu: connection ${this.pc.connectionState}`);
    this.outgoing = {};
    this.layers = Promise.resolve(); // the last layer change, applied in order
    for (const kind of ["audio", "video"]) {
      /** @type {RTCRtpTransceiverInit} */
      const init = { direction: "sendonly", streams: [local.stream] };
      if (kind === "video") init.sendEncodings = SIMULCAST.map((e) => ({ ...e }));
      this.outgoing[kind] = this.pc.addTransceiver(local.track(kind) ?? kind, init);
    }
    for (let i = 0; i < SFU_SLOTS; i++) {
      this.pc.addTransceiver("audio", { direction: "recvonly" });
      this.pc.addTransceiver("video", { direction: "recvonly" });
    }
  }

  async start() {
    await this.pc.setLocalDescription();
    this.send(protocol.sfuOffer(/** @type {RTCSessionDescription} */ (this.pc.localDescription).sdp));
  }

  async answer(sdp) {
    await this.pc.setRemoteDescription({ type: "answer", sdp });
  }

  setSlots(slots) {
    this.slots = slots;
    this.publish();
  }

  /// Tells the call, for each participant carried by the SFU, the stream to show: their
  /// slots' tracks that are actually receiving.
  publish() {
    const streams = new Map();
    for (const { mid, participant } of this.slots) {
      const track = this.tracks.get(mid);
      if (!track) continue;
      if (!streams.has(participant)) streams.set(participant, []);
      streams.get(participant).push(track);
    }
    this.onStreams(streams);
  }

  /// Sends only the simulcast encodings the relay names (rids) on our video m-line `mid`;
  /// a resumed encoding starts with a keyframe. Calls are applied one after another, each
  /// from fresh parameters, so the relay's latest word is what holds: two overlapping
  /// `setParameters` would let a stale read undo the newer change.
  setLayers(mid, active) {
    const applied = this.layers.then(() => this.applyLayers(mid, active));
    this.layers = applied.catch(() => {});
    return applied;
  }

  async applyLayers(mid, active) {
    const video = this.outgoing.video;
    if (video.mid !== mid || active.length === 0) return;
    const params = video.sender.getParameters();
    let changed = false;
    for (const encoding of params.encodings ?? []) {
      const on = active.includes(encoding.rid);
      if (encoding.active !== on) {
        encoding.active = on;
        changed = true;
      }
    }
    if (changed) {
      await video.sender.setParameters(params);
      log("info", `sfu: sending layers ${active.join(", ")}`);
    }
  }

  async setTrack(kind, track) {
    await this.outgoing[kind].sender.replaceTrack(track);
  }

  /// Per participant: what arrives from them through the SFU, and over which path.
  async stats() {
    const report = await this.pc.getStats();
    const byMid = new Map();
    /** @type {RTCIceCandidatePairStats | null} */
    let pair = null;
    for (const s of report.values()) {
      if (s.type === "inbound-rtp" && s.mid != null) byMid.set(s.mid, s);
      if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
    }
    if (!pair) report.forEach((s) => { if (s.type === "candidate-pair" && (s.selected || (s.nominated && s.state === "succeeded"))) pair = s; });
    const path = pair && {
      local: describe(report.get(pair.localCandidateId)),
      remote: describe(report.get(pair.remoteCandidateId)),
      rtt: pair.currentRoundTripTime ?? null,
    };
    const result = new Map();
    for (const { mid, participant, kind } of this.slots) {
      const s = byMid.get(mid);
      const entry = result.get(participant) ?? { id: participant, via: "sfu", connectionState: this.pc.connectionState, collisions: 0, framesDecoded: 0, totalSamplesReceived: 0, frameWidth: 0, frameHeight: 0, framesSent: 0, path };
      if (s && kind === "video") {
        entry.framesDecoded += s.framesDecoded ?? 0;
        entry.frameWidth = s.frameWidth ?? entry.frameWidth;
        entry.frameHeight = s.frameHeight ?? entry.frameHeight;
      }
      if (s && kind === "audio") entry.totalSamplesReceived += s.totalSamplesReceived ?? 0;
      result.set(participant, entry);
    }
    return [...result.values()];
  }

  /// What we send, per simulcast layer (rid → frame height, frames sent, and whether the
  /// layer is active: the relay pauses layers nobody watches).
  async sent() {
    const report = await this.pc.getStats();
    const active = new Map((this.outgoing.video.sender.getParameters().encodings ?? []).map((e) => [e.rid ?? "", e.active !== false]));
    const layers = {};
    report.forEach((s) => {
      if (s.type === "outbound-rtp" && s.kind === "video") {
        const rid = s.rid ?? "";
        layers[rid] = { frameHeight: s.frameHeight ?? 0, framesSent: s.framesSent ?? 0, active: active.get(rid) ?? true };
      }
    });
    return layers;
  }

  close() {
    this.pc.close();
  }
}

function describe(c) {
  return c && { type: c.candidateType, address: c.address ?? c.ip, port: c.port, protocol: c.protocol, relayProtocol: c.relayProtocol };
}
