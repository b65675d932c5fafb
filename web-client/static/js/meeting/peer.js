// One direct connection to another participant: an RTCPeerConnection negotiated with the
// "perfect negotiation" pattern (W3C WebRTC §10.7). Both sides add their tracks as soon as
// they learn of each other, so both may offer at once; the polite side (the later joiner)
// then yields, and the impolite side ignores the colliding offer. Signals are handled one at
// a time, in order.

const DISCONNECTED_RESTART_MS = 4_000;

export class Peer {
  /// `send(payload)` delivers {description} or {candidate} to the other side via the node.
  constructor({ id, polite, iceServers, local, send, onTrack, onState }) {
    this.id = id;
    this.polite = polite;
    this.send = send;
    this.onState = onState;
    this.pc = new RTCPeerConnection({ iceServers });
    this.stream = new MediaStream();
    this.senders = { audio: null, video: null };
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.settingAnswer = false;
    this.queue = Promise.resolve();
    this.restartTimer = null;
    this.limits = null;
    this.collisions = 0;

    const pc = this.pc;
    pc.ontrack = ({ track }) => {
      this.stream.addTrack(track);
      track.onunmute = () => onTrack(this.stream);
      onTrack(this.stream);
    };
    pc.onicecandidate = ({ candidate }) => {
      if (candidate) this.send({ candidate: candidate.toJSON() });
    };
    pc.onnegotiationneeded = () => this.offer();
    pc.oniceconnectionstatechange = () => this.watchIce();
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "connected") this.applyLimits();
      onState(pc.connectionState);
    };
    for (const kind of ["audio", "video"]) {
      const track = local.track(kind);
      if (track) this.senders[kind] = pc.addTrack(track, local.stream);
    }
  }

  async offer() {
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      this.send({ description: this.pc.localDescription.toJSON() });
    } catch (e) {
      console.warn(`confab: offer to ${this.id} failed`, e);
    } finally {
      this.makingOffer = false;
    }
  }

  /// A {description} or {candidate} from the other side.
  signal(payload) {
    this.queue = this.queue.then(() => this.handle(payload)).catch((e) => console.warn(`confab: signal from ${this.id}`, e));
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
        await pc.setLocalDescription();
        this.send({ description: pc.localDescription.toJSON() });
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

  /// Sends `track` (or nothing, when null) as this connection's `kind`.
  async setTrack(kind, track, stream) {
    if (this.senders[kind]) {
      await this.senders[kind].replaceTrack(track);
    } else if (track) {
      this.senders[kind] = this.pc.addTrack(track, stream);
    }
    if (kind === "video") this.applyLimits();
  }

  /// Caps what this connection sends so that all of them together fit the uplink.
  setLimits(limits) {
    this.limits = limits;
    this.applyLimits();
  }

  async applyLimits() {
    const sender = this.senders.video;
    if (!sender || !this.limits) return;
    const params = sender.getParameters();
    if (!params.encodings?.length) return; // Not negotiated yet: applied once it is.
    const encoding = params.encodings[0];
    if (encoding.maxBitrate === this.limits.maxBitrate && encoding.scaleResolutionDownBy === this.limits.scale) return;
    encoding.maxBitrate = this.limits.maxBitrate;
    encoding.scaleResolutionDownBy = this.limits.scale;
    try {
      await sender.setParameters(params);
    } catch (e) {
      console.warn(`confab: cannot limit video to ${this.id}`, e);
    }
  }

  watchIce() {
    const state = this.pc.iceConnectionState;
    clearTimeout(this.restartTimer);
    if (state === "failed") {
      this.restartIce();
    } else if (state === "disconnected") {
      this.restartTimer = setTimeout(() => this.pc.iceConnectionState === "disconnected" && this.restartIce(), DISCONNECTED_RESTART_MS);
    }
  }

  restartIce() {
    if (this.pc.signalingState === "closed") return;
    console.info(`confab: restarting ICE with ${this.id}`);
    this.pc.restartIce();
  }

  /// Figures for the stats overlay and for tests: what arrives, and over which path.
  async stats() {
    const report = await this.pc.getStats();
    const result = { id: this.id, connectionState: this.pc.connectionState, collisions: this.collisions, framesDecoded: 0, totalSamplesReceived: 0, frameWidth: 0, frameHeight: 0, framesSent: 0 };
    let pair = null;
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") {
        result.framesDecoded += s.framesDecoded ?? 0;
        result.frameWidth = s.frameWidth ?? result.frameWidth;
        result.frameHeight = s.frameHeight ?? result.frameHeight;
      }
      if (s.type === "inbound-rtp" && s.kind === "audio") result.totalSamplesReceived += s.totalSamplesReceived ?? 0;
      if (s.type === "outbound-rtp" && s.kind === "video") result.framesSent += s.framesSent ?? 0;
      if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
    });
    if (!pair) report.forEach((s) => { if (s.type === "candidate-pair" && (s.selected || (s.nominated && s.state === "succeeded"))) pair = s; });
    if (pair) {
      const local = report.get(pair.localCandidateId);
      const remote = report.get(pair.remoteCandidateId);
      result.path = {
        local: { type: local?.candidateType, address: local?.address ?? local?.ip, port: local?.port, protocol: local?.protocol },
        remote: { type: remote?.candidateType, address: remote?.address ?? remote?.ip, port: remote?.port, protocol: remote?.protocol },
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
