// The meeting itself: who is here (from the node's signaling), one Peer per other
// participant (a full mesh), and the tiles. The node only relays signals; media goes from
// browser to browser.

import { Peer, meshLimits } from "./peer.js";
import { Signaling } from "./signaling.js";
import { speakingDetector } from "./media.js";

const number = (id) => Number(id.slice(1));

export class Call {
  constructor({ room, invite, name, local, levels, tiles, onCount, onConnection, onEnd }) {
    this.local = local;
    this.levels = levels;
    this.tiles = tiles;
    this.onCount = onCount;
    this.onConnection = onConnection;
    this.onEnd = onEnd;
    this.me = null;
    this.participants = new Map();
    this.peers = new Map();
    this.iceServers = [];
    this.mode = "mesh";
    this.removedBy = null;
    this.signaling = new Signaling(
      room,
      { type: "join", v: 1, invite, name, audio: local.audioOn, video: local.videoOn },
      {
        onWelcome: (m, resumed) => this.welcome(m, resumed),
        onMessage: (m) => this.message(m),
        onState: (s) => this.onConnection(s),
        onEnd: (reason) => this.ended(reason),
      },
    );
  }

  welcome(m, resumed) {
    this.iceServers = m.ice_servers;
    this.mode = m.mode;
    if (!resumed) {
      // A new seat (first join, or a return after the grace period): start every pair afresh.
      for (const id of [...this.peers.keys()]) this.drop(id);
      if (this.me) this.tiles.remove(this.me.id);
    }
    this.me = { ...m.you, audio: this.local.audioOn, video: this.local.videoOn };
    this.tiles.upsert(this.me, { self: true });
    this.tiles.show(this.me.id, this.local.stream);
    this.levels.watch(this.me.id, this.local.stream, speakingDetector((on) => this.tiles.speaking(this.me.id, on)));
    const present = new Set(m.participants.map((p) => p.id));
    for (const id of [...this.participants.keys()]) if (!present.has(id)) this.drop(id);
    for (const view of m.participants) this.arrive(view);
    if (resumed) {
      // Signals sent while we were away may be lost: restart any pair that is not up.
      for (const peer of this.peers.values()) {
        if (!["connected", "connecting", "new"].includes(peer.pc.connectionState)) peer.restartIce();
      }
    }
    // What we send may have changed while the node could not hear us.
    this.signaling.send({ type: "media", audio: this.local.audioOn, video: this.local.videoOn });
    this.changed();
  }

  message(m) {
    switch (m.type) {
      case "joined":
        this.arrive(m.participant);
        this.changed();
        break;
      case "updated":
        if (this.participants.has(m.participant.id)) {
          this.participants.set(m.participant.id, m.participant);
          this.tiles.upsert(m.participant, this.tileOptions());
        }
        break;
      case "left":
        this.drop(m.participant);
        this.changed();
        break;
      case "signal":
        this.peers.get(m.from)?.signal({ description: m.description, candidate: m.candidate });
        break;
      case "mode":
        // The SFU role arrives with the next version; until then every meeting stays a mesh.
        this.mode = m.mode;
        break;
      case "removed":
        this.removedBy = m.by;
        break;
      default:
        break;
    }
  }

  tileOptions() {
    return { onRemove: this.me?.role === "host" ? (id) => this.remove(id) : null };
  }

  arrive(view) {
    this.participants.set(view.id, view);
    this.tiles.upsert(view, this.tileOptions());
    if (this.peers.has(view.id)) return;
    const peer = new Peer({
      id: view.id,
      polite: number(this.me.id) > number(view.id),
      iceServers: this.iceServers,
      local: this.local,
      send: (payload) => this.signaling.send({ type: "signal", to: view.id, ...payload }),
      onTrack: (stream) => {
        this.tiles.show(view.id, stream);
        this.levels.watch(view.id, stream, speakingDetector((on) => this.tiles.speaking(view.id, on)));
      },
      onState: () => {},
    });
    this.peers.set(view.id, peer);
  }

  drop(id) {
    this.peers.get(id)?.close();
    this.peers.delete(id);
    this.participants.delete(id);
    this.levels.unwatch(id);
    this.tiles.remove(id);
  }

  /// After the set of participants changed: the count, and what each connection may send.
  changed() {
    this.onCount(this.participants.size + 1);
    const limits = meshLimits(this.peers.size);
    for (const peer of this.peers.values()) peer.setLimits(limits);
  }

  async setAudio(on) {
    const track = await this.local.setAudio(on);
    if (track !== undefined) for (const peer of this.peers.values()) await peer.setTrack("audio", track);
    this.levels.watch(this.me.id, this.local.stream, speakingDetector((s) => this.tiles.speaking(this.me.id, s)));
    this.announce();
    return this.local.audioOn;
  }

  async setVideo(on) {
    const track = await this.local.setVideo(on);
    for (const peer of this.peers.values()) await peer.setTrack("video", track);
    this.announce();
    return this.local.videoOn;
  }

  announce() {
    this.me = { ...this.me, audio: this.local.audioOn, video: this.local.videoOn };
    this.tiles.upsert(this.me, { self: true });
    this.signaling.send({ type: "media", audio: this.local.audioOn, video: this.local.videoOn });
  }

  remove(id) {
    this.signaling.send({ type: "remove", participant: id });
  }

  leave() {
    this.signaling.leave();
  }

  ended(reason) {
    for (const id of [...this.peers.keys()]) this.drop(id);
    this.local.stop();
    this.onEnd(this.removedBy ? `${this.removedBy} removed you from the meeting.` : reason);
  }

  /// Figures for every connection (used by the tests, handy in the console).
  async stats() {
    return Promise.all([...this.peers.values()].map((p) => p.stats()));
  }
}
