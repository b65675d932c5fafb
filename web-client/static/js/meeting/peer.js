// @ts-check
// One direct connection to another participant: an RTCPeerConnection negotiated with the
// "perfect negotiation" pattern (W3C WebRTC §10.7): whenever both sides offer at once, the
// polite side (the later joiner) yields and the impolite side ignores the colliding offer.
//
// Each pair has exactly four transceivers, created by the impolite side's first offer in
// this order: audio, camera, screen video, screen audio; the polite side takes them over, in
// the same order, when that offer arrives. Starting or stopping a screen share, like turning
// a camera on or off, only swaps tracks (replaceTrack) and never renegotiates. Turning a camera or
// microphone on or off then only swaps tracks (replaceTrack) and never renegotiates, and two
// participants who join at the same instant do not both offer: when both first offers
// collided, Chromium 156 sometimes never started ICE on the polite side after the implicit
// rollback (docs/signaling.md). Later offers (ICE restarts) may still collide, and the pattern
// handles them. Signals are handled one at a time, in order.

import { audioWithRedFirst, prefer } from "./codecs.js";
import { log } from "./log.js";
import { SCREEN_FPS } from "./media.js";

const DISCONNECTED_RESTART_MS = 4_000;

/// The transceivers of a pair, in m-line order, and the kind of each.
const ROLES = /** @type {const} */ ([
  ["audio", "audio"],
  ["video", "video"],
  ["screen", "video"],
  ["screenAudio", "audio"],
]);

export class Peer {
  /// `send(payload)` delivers {description} or {candidate} to the other side via the node.
  /// `onTrack(stream)` gets the camera and microphone, `onScreen(stream)` the screen share.
  constructor({ id, polite, iceServers, local, send, onTrack, onScreen, onState }) {
    this.id = id;
    this.polite = polite;
    this.send = send;
    this.onState = onState;
    this.pc = new RTCPeerConnection({ iceServers });
    this.stream = new MediaStream();
    this.screenStream = new MediaStream();
    this.local = local;
    /** @type {Record<"audio" | "video" | "screen" | "screenAudio", RTCRtpTransceiver | null>} */
    this.transceivers = { audio: null, video: null, screen: null, screenAudio: null };
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.settingAnswer = false;
    this.queue = Promise.resolve();
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.restartTimer = undefined;
    this.limits = null;
    this.collisions = 0;
    this.describing = 0;
    this.heldCandidates = [];
    /** Whether we receive their camera (low-bandwidth mode turns it off but for the speaker). */
    this.cameraWanted = true;

    const pc = this.pc;
    pc.ontrack = ({ track, transceiver }) => {
      // Which of the four: by its place among the transceivers of its kind.
      const sameKind = pc.getTransceivers().filter((t) => t.receiver.track.kind === track.kind);
      const screen = sameKind.indexOf(transceiver) === 1;
      const stream = screen ? this.screenStream : this.stream;
      const deliver = screen ? (onScreen ?? (() => {})) : onTrack;
      stream.addTrack(track);
      track.onunmute = () => deliver(stream);
      deliver(stream);
    };
    pc.onicecandidate = ({ candidate }) => {
      if (!candidate) return;
      // Browsers may gather before setLocalDescription resolves; a candidate that overtook
      // its description would reach a peer that cannot use it yet, so it waits.
      if (this.describing > 0) this.heldCandidates.push(candidate.toJSON());
      else this.send({ candidate: candidate.toJSON() });
    };
    pc.onnegotiationneeded = () => this.offer();
    pc.oniceconnectionstatechange = () => this.watchIce();
    pc.onconnectionstatechange = () => {
      log("info", `${id}: connection ${pc.connectionState}`);
      if (pc.connectionState === "connected") this.applyLimits();
      onState(pc.connectionState);
    };
    if (!polite) {
      for (const [role, kind] of ROLES) {
        this.transceivers[role] = pc.addTransceiver(this.trackFor(role) ?? kind, { direction: "sendrecv", streams: [local.stream] });
        if (kind === "audio") prefer(this.transceivers[role], audioWithRedFirst());
      }
    }
  }

  /// On the polite side: takes over the transceivers the first offer created, with our
  /// tracks, before answering.
  async adopt() {
    for (const t of this.pc.getTransceivers()) {
      const kind = t.receiver.track.kind;
      // `stopped` is what older browsers have instead of the "stopped" direction.
      if (/** @type {any} */ (t).stopped || t.currentDirection === "stopped" || Object.values(this.transceivers).includes(t)) continue;
      const free = ROLES.find(([role, k]) => k === kind && !this.transceivers[role]);
      if (!free) continue;
      const [role] = free;
      this.transceivers[role] = t;
      t.direction = role === "video" && !this.cameraWanted ? "sendonly" : "sendrecv";
      // Our answer lists RED first too, so that the other side sends it as well.
      if (kind === "audio") prefer(t, audioWithRedFirst());
      await t.sender.replaceTrack(this.trackFor(role));
      if (role === "screen") await this.screenParameters();
    }
  }

  /// Receives their camera or not (we keep sending ours): the change renegotiates, and the
  /// other side's answer stops or resumes its sending.
  receiveCamera(on) {
    this.cameraWanted = on;
    const t = this.transceivers.video;
    const direction = on ? "sendrecv" : "sendonly";
    if (t && t.direction !== direction) t.direction = direction;
  }

  /// What we send on transceiver `role`: our microphone, camera, or screen share.
  trackFor(role) {
    if (role === "screen") return this.local.screenTrack("video");
    if (role === "screenAudio") return this.local.screenTrack("audio");
    return this.local.track(role);
  }

  /// Sends our screen share (or stops sending it, with null tracks).
  /// The screen's limits go first, so that its very first frames are already small and
  /// rare (its first keyframe, at full size and bitrate, held the camera's packets back).
  async setScreen() {
    await this.screenParameters();
    await this.transceivers.screen?.sender.replaceTrack(this.trackFor("screen"));
    await this.transceivers.screenAudio?.sender.replaceTrack(this.trackFor("screenAudio"));
  }

  /// A screen keeps its resolution: slides and code stay readable, the frame rate gives.
  async screenParameters() {
    const sender = this.transceivers.screen?.sender;
    if (!sender) return;
    const params = sender.getParameters();
    if (!params.encodings?.length) return;
    params.encodings[0].maxBitrate = 800_000;
    params.encodings[0].maxFramerate = SCREEN_FPS;
    // When the uplink is short, the camera keeps its share and the screen gives.
    params.encodings[0].priority = "low";
    params.encodings[0].networkPriority = "low";
    params.degradationPreference = "maintain-resolution";
    try {
      await sender.setParameters(params);
    } catch (e) {
      log("warn", `cannot set the screen's parameters for ${this.id}`, e);
    }
  }

  async offer() {
    try {
      this.makingOffer = true;
      await this.describe();
    } catch (e) {
      log("warn", `offer to ${this.id} failed`, e);
    } finally {
      this.makingOffer = false;
    }
  }

  /// Sets and sends our offer or answer, then the candidates gathered meanwhile. An offer
  /// and an answer can overlap (an offer collision): candidates wait for the last of them.
  async describe() {
    this.describing += 1;
    try {
      await this.pc.setLocalDescription();
      this.send({ description: /** @type {RTCSessionDescription} */ (this.pc.localDescription).toJSON() });
    } finally {
      this.describing -= 1;
      if (this.describing === 0) {
        const held = this.heldCandidates;
        this.heldCandidates = [];
        for (const candidate of held) this.send({ candidate });
      }
    }
  }

  /// A {description} or {candidate} from the other side.
  signal(payload) {
    this.queue = this.queue.then(() => this.handle(payload)).catch((e) => log("warn", `signal from ${this.id}`, e));
  }

  async handle({ description, candidate }) {
    const pc = this.pc;
    if (pc.signalingState === "closed") return;
    if (description) {
      const readyForOffer = !this.makingOffer && (pc.signalingState === "stable" || this.settingAnswer);
      const collision = description.type === "offer" && !readyForOffer;
      if (collision) this.collisions += 1;
      this.ignoreOffer = !this.polite && collision;
      if (this.ignoreOffer) return;
      this.settingAnswer = description.type === "answer";
      await pc.setRemoteDescription(description);
      this.settingAnswer = false;
      if (description.type === "offer") {
        await this.adopt();
        await this.describe();
      }
      this.applyLimits();
    } else if (candidate) {
      try {
        await pc.addIceCandidate(candidate);
      } catch (e) {
        if (!this.ignoreOffer) throw e;
      }
    }
  }

  /// Sends `track` (or nothing, when null) as this connection's `kind`. Before the first
  /// offer has arrived on the polite side there is nothing to swap: `adopt` will use the
  /// track then.
  async setTrack(kind, track) {
    await this.transceivers[kind]?.sender.replaceTrack(track);
    if (kind === "video") this.applyLimits();
  }

  /// Caps what this connection sends so that all of them together fit the uplink.
  setLimits(limits) {
    this.limits = limits;
    this.applyLimits();
  }

  async applyLimits() {
    const sender = this.transceivers.video?.sender;
    if (!sender || !this.limits) return;
    const params = sender.getParameters();
    if (!params.encodings?.length) return; // Not negotiated yet: applied once it is.
    const encoding = params.encodings[0];
    if (encoding.maxBitrate === this.limits.maxBitrate && encoding.scaleResolutionDownBy === this.limits.scale && encoding.priority === "high") return;
    encoding.maxBitrate = this.limits.maxBitrate;
    encoding.scaleResolutionDownBy = this.limits.scale;
    encoding.priority = "high";
    encoding.networkPriority = "high";
    try {
      await sender.setParameters(params);
    } catch (e) {
      log("warn", `cannot limit video to ${this.id}`, e);
    }
  }

  watchIce() {
    const state = this.pc.iceConnectionState;
    log("info", `${this.id}: ICE ${state}`);
    clearTimeout(this.restartTimer);
    if (state === "failed") {
      this.restartIce();
    } else if (state === "disconnected") {
      this.restartTimer = setTimeout(() => this.pc.iceConnectionState === "disconnected" && this.restartIce(), DISCONNECTED_RESTART_MS);
    }
  }

  restartIce() {
    if (this.pc.signalingState === "closed") return;
    log("info", `restarting ICE with ${this.id}`);
    this.pc.restartIce();
  }

  /// Figures for the stats overlay and for tests: what arrives, and over which path.
  async stats() {
    const report = await this.pc.getStats();
    const result = { id: this.id, via: "mesh", connectionState: this.pc.connectionState, collisions: this.collisions, framesDecoded: 0, totalSamplesReceived: 0, frameWidth: 0, frameHeight: 0, framesSent: 0 };
    /** @type {RTCIceCandidatePairStats | null} */
    let pair = null;
    // The camera's and microphone's streams only (the screen share has its own tile).
    const camera = (/** @type {string | undefined} */ mid, /** @type {"audio" | "video"} */ kind) => mid === undefined || mid === this.transceivers[kind]?.mid;
    for (const s of report.values()) {
      if (s.type === "inbound-rtp" && s.kind === "video" && camera(s.mid, "video")) {
        result.framesDecoded += s.framesDecoded ?? 0;
        result.frameWidth = s.frameWidth ?? result.frameWidth;
        result.frameHeight = s.frameHeight ?? result.frameHeight;
      }
      if (s.type === "inbound-rtp" && s.kind === "audio" && camera(s.mid, "audio")) result.totalSamplesReceived += s.totalSamplesReceived ?? 0;
      if (s.type === "outbound-rtp" && s.kind === "video" && camera(s.mid, "video")) result.framesSent += s.framesSent ?? 0;
      if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
    }
    if (!pair) report.forEach((s) => { if (s.type === "candidate-pair" && (s.selected || (s.nominated && s.state === "succeeded"))) pair = s; });
    if (pair) {
      const local = report.get(pair.localCandidateId);
      const remote = report.get(pair.remoteCandidateId);
      result.path = {
        local: { type: local?.candidateType, address: local?.address ?? local?.ip, port: local?.port, protocol: local?.protocol, relayProtocol: local?.relayProtocol },
        remote: { type: remote?.candidateType, address: remote?.address ?? remote?.ip, port: remote?.port, protocol: remote?.protocol, relayProtocol: remote?.relayProtocol },
        rtt: pair.currentRoundTripTime ?? null,
      };
    }
    return result;
  }

  close() {
    clearTimeout(this.restartTimer);
    this.pc.close();
  }
}

/// What each connection may send when there are `peers` of them: a fixed uplink budget
/// shared out, and a smaller picture as the mesh grows (docs/signaling.md, "Uplink").
export function meshLimits(peers) {
  const UPLINK_BPS = 2_000_000;
  const n = Math.max(1, peers);
  const maxBitrate = Math.round(Math.max(150_000, Math.min(1_500_000, UPLINK_BPS / n)));
  const scale = n <= 1 ? 1 : n === 2 ? 1.5 : n === 3 ? 2 : 3;
  return { maxBitrate, scale };
}
