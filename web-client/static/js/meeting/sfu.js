// @ts-check
// The connection to the node's SFU, used once the meeting is past the mesh threshold: one
// RTCPeerConnection that sends our audio and video and receives the others' on a fixed
// number of receive-only slots. The node's relay answers our offer once and never offers
// itself; as people come and go it tells us which participant each slot now carries
// (`sfu-slots`), and which of our simulcast layers anyone receives (`sfu-layers`): we pause
// the others, so neither our encoder nor our uplink spends anything on them.

import { audioWithRedFirst, prefer } from "./codecs.js";
import { log } from "./log.js";
import { SCREEN_FPS } from "./media.js";
import * as protocol from "./protocol.js";

/// Receive slots per kind: how many others we can hear and see at once through the SFU.
export const SFU_SLOTS = 9;

/// Receive slots per kind for screen shares, beyond those: the relay forwards every share
/// ahead of the cameras, so two presenters at once cost nobody a camera.
export const SCREEN_SLOTS = 2;
/// How long the connection to the relay may stay "disconnected" before the link publishes
/// again (a short network blip recovers by itself within it).
const SFU_LOST_MS = 3000;

/// Our camera as three VP8 encodings; the SFU forwards each subscriber the one that fits the
/// tile it is shown in and its bandwidth. (Browsers drop the upper layers by themselves
/// when the camera's resolution is too low for them.) Each without temporal layers
/// (`L1T1`; Chromium's simulcast default is three): the relay never thins a layer's frame
/// rate, and with temporal layers a receiver skips (drops) a non-reference frame whose lost
/// packet is still being retransmitted as soon as a later frame is complete, where with
/// every frame a reference it waits the few milliseconds the retransmission takes.
export const SIMULCAST = [
  { rid: "l", scaleResolutionDownBy: 4, maxBitrate: 150_000, scalabilityMode: "L1T1" },
  { rid: "m", scaleResolutionDownBy: 2, maxBitrate: 500_000, scalabilityMode: "L1T1" },
  { rid: "h", scaleResolutionDownBy: 1, maxBitrate: 1_500_000, scalabilityMode: "L1T1" },
];

/// A shared screen as two VP8 encodings at its low frame rate: full size (up to 1080p) for
/// the large tile, and half size for small tiles and weak links.
export const SCREEN_SIMULCAST = [
  { rid: "l", scaleResolutionDownBy: 2, maxBitrate: 300_000, maxFramerate: SCREEN_FPS, scalabilityMode: "L1T1" },
  { rid: "h", scaleResolutionDownBy: 1, maxBitrate: 1_500_000, maxFramerate: SCREEN_FPS, scalabilityMode: "L1T1" },
];

export class SfuLink {
  /// `onStreams(map)` gets, per participant, their camera's and microphone's tracks;
  /// `onScreens(map)` the tracks of each screen being shared with us.
  /// `onFailed()` is called when the connection to the relay fails, or stays disconnected
  /// for `SFU_LOST_MS`.
  constructor({ local, iceServers, send, onStreams, onScreens, onFailed }) {
    this.local = local;
    this.send = send;
    this.onStreams = onStreams;
    this.onScreens = onScreens ?? (() => {});
    this.pc = new RTCPeerConnection({ iceServers, bundlePolicy: "max-bundle" });
    this.tracks = new Map(); // mid → remote track
    this.slots = []; // [{mid, participant, kind}]
    this.pc.ontrack = ({ transceiver, track }) => {
      this.tracks.set(transceiver.mid, track);
      track.onunmute = () => this.publish();
      this.publish();
    };
    // A relay that stops answering (its node died, the network changed) shows as
    // "disconnected" within seconds and "failed" much later: give it a moment to come back.
    let lost = null;
    this.pc.onconnectionstatechange = () => {
      const state = this.pc.connectionState;
      log("info", `sfu: connection ${state}`);
      clearTimeout(lost);
      if (state === "failed") onFailed?.();
      else if (state === "disconnected") lost = setTimeout(() => onFailed?.(), SFU_LOST_MS);
    };
    this.layers = Promise.resolve(); // the last layer change, applied in order
    // What we send, in this m-line order (the relay knows the screen's by it: after the
    // first send m-line of each kind, the next carries the screen): microphone, camera,
    // screen, screen sound. The screen's are there from the start, without a track until
    // a share starts, so that starting one never renegotiates.
    /** @param {"audio" | "video"} kind */
    const sending = (kind, track, encodings) => {
      /** @type {RTCRtpTransceiverInit} */
      const init = { direction: "sendonly", streams: [local.stream] };
      if (encodings) init.sendEncodings = encodings.map((e) => ({ ...e }));
      return this.pc.addTransceiver(track ?? kind, init);
    };
    this.outgoing = {
      audio: sending("audio", local.track("audio"), null),
      video: sending("video", local.track("video"), SIMULCAST),
      screen: sending("video", local.screenTrack("video"), SCREEN_SIMULCAST),
      screenAudio: sending("audio", local.screenTrack("audio"), null),
    };
    for (let i = 0; i < SFU_SLOTS + SCREEN_SLOTS; i++) {
      this.pc.addTransceiver("audio", { direction: "recvonly" });
      this.pc.addTransceiver("video", { direction: "recvonly" });
    }
    for (const t of this.pc.getTransceivers()) preferRelayCodecs(t);
    if (local.screen) this.setScreen().catch((e) => log("warn", "could not send the screen share to the SFU", e));
  }

  async start() {
    await this.pc.setLocalDescription();
    const sdp = /** @type {RTCSessionDescription} */ (this.pc.localDescription).sdp;
    log("info", `sfu: offer of ${sdp.length} bytes`);
    this.send(protocol.sfuOffer(sdp));
  }

  async answer(sdp) {
    await this.pc.setRemoteDescription({ type: "answer", sdp });
  }

  setSlots(slots) {
    this.slots = slots;
    this.publish();
  }

  /// Tells the call, for each participant carried by the SFU, the tracks to show: their
  /// camera's and microphone's, and (separately) their screen's.
  publish() {
    const streams = new Map();
    const screens = new Map();
    for (const { mid, participant, kind } of this.slots) {
      const track = this.tracks.get(mid);
      if (!track) continue;
      const into = kind === "screen" || kind === "screen-audio" ? screens : streams;
      if (!into.has(participant)) into.set(participant, []);
      into.get(participant).push(track);
    }
    this.onStreams(streams);
    this.onScreens(screens);
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
    const video = [this.outgoing.video, this.outgoing.screen].find((t) => t.mid === mid);
    if (!video || active.length === 0) return;
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
      log("info", `sfu: sending layers ${active.join(", ")} of ${video === this.outgoing.screen ? "the screen" : "the camera"}`);
    }
  }

  async setTrack(kind, track) {
    await this.outgoing[kind].sender.replaceTrack(track);
  }

  /// Sends our screen share (or stops sending it, with null tracks). The screen keeps its
  /// resolution: slides and code stay readable, the frame rate gives.
  async setScreen() {
    await this.outgoing.screen.sender.replaceTrack(this.local.screenTrack("video"));
    await this.outgoing.screenAudio.sender.replaceTrack(this.local.screenTrack("audio"));
    const sender = this.outgoing.screen.sender;
    const params = sender.getParameters();
    if (!this.local.screen || !params.encodings?.length || params.degradationPreference === "maintain-resolution") return;
    params.degradationPreference = "maintain-resolution";
    try {
      await sender.setParameters(params);
    } catch (e) {
      log("warn", "cannot set the screen's parameters", e);
    }
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

  /// What our camera sends, per simulcast layer (rid → frame height, frames sent, and
  /// whether the layer is active: the relay pauses layers nobody watches).
  async sent() {
    const report = await this.pc.getStats();
    const video = this.outgoing.video;
    const active = new Map((video.sender.getParameters().encodings ?? []).map((e) => [e.rid ?? "", e.active !== false]));
    const layers = {};
    report.forEach((s) => {
      if (s.type === "outbound-rtp" && s.kind === "video" && (s.mid == null || s.mid === video.mid)) {
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

/// Offers only the codecs the relay forwards (Opus; VP8, H.264 with packetization mode 1,
/// and their retransmissions): every slot's m-line lists them, and two dozen m-lines with
/// every codec a browser knows would not fit in one signaling message (64 KiB).
function preferRelayCodecs(/** @type {RTCRtpTransceiver} */ transceiver) {
  const kind = transceiver.receiver.track.kind;
  const codecs = RTCRtpReceiver.getCapabilities?.(kind)?.codecs ?? [];
  if (kind === "audio") {
    // Opus, with RED ahead of it where the browser has it (the relay forwards either).
    const audio = (audioWithRedFirst() ?? codecs).filter(({ mimeType }) => ["audio/red", "audio/opus"].includes(mimeType.toLowerCase()));
    prefer(transceiver, audio);
    return;
  }
  const wanted = codecs.filter(({ mimeType, sdpFmtpLine }) => {
    const type = mimeType.toLowerCase();
    if (type === "video/h264") return /packetization-mode=1/.test(sdpFmtpLine ?? "") && /profile-level-id=42e01f/.test(sdpFmtpLine ?? "");
    return type === "video/vp8" || type === "video/rtx";
  });
  prefer(transceiver, wanted);
}

function describe(c) {
  return c && { type: c.candidateType, address: c.address ?? c.ip, port: c.port, protocol: c.protocol, relayProtocol: c.relayProtocol };
}
