// @ts-check
// The meeting itself: who is here (from the node's signaling), how their media reaches us,
// and the tiles. In mesh mode there is one Peer per other participant and the node only
// relays signals. In SFU mode there is one SfuLink to the node. Switching is make-before-
// break: a participant's tile moves to the new path only once media arrives on it, and the
// old path to them is closed after that.

import { log } from "./log.js";
import * as protocol from "./protocol.js";
import { Peer, meshLimits } from "./peer.js";
import { SfuLink } from "./sfu.js";
import { Signaling } from "./signaling.js";
import { speakingDetector } from "./media.js";
import { FLOW_EVERY_MS, Flow, NEW_ADDRESS_WAIT_MS, hostAddresses, newAddress, newestPacket } from "./flow.js";
import { Meter, describePath, pathOf, quality, uplinkLoss } from "./stats.js";
import { t, tn } from "../i18n.js";

const number = (id) => Number(id.slice(1));

/// After a tile moves to a new path, the old connection stays this long: the other side
/// receives our media over it until its own tile for us has moved too.
const OLD_PATH_GRACE_MS = 3_000;

/// A direct connection not up this long after it started is reported to the node, which
/// moves the meeting to the SFU (some networks allow no direct path).
const MESH_CONNECT_TIMEOUT_MS = 12_000;

/// How often, in SFU mode, we tell the node how big each tile is (when that changed).
const VIEW_EVERY_MS = 500;

/// How often each tile's quality indicator is brought up to date.
const QUALITY_EVERY_MS = 2_000;

/// The SFU's simulcast layers by the height they arrive in.
const layerName = (/** @type {number} */ height) =>
  height === 0 ? null : t(height <= 200 ? "layer.low" : height <= 400 ? "layer.medium" : "layer.high", { height: String(height) });

export class Call {
  /// Handlers: onCount(n), onConnection(state), onEnd(reason), onPeople(me, others) whenever
  /// anyone's state changes, onChat(messages) for chat (a welcome's history, then each
  /// message), onRefused(error) when the node refused something we sent, onNotice(text) for
  /// what a host did to us or the meeting, onLobby(hostPresent) while we wait in the lobby
  /// (null once let in).
  constructor({ room, invite, name, nodes, local, levels, tiles, onCount, onConnection, onEnd, onPeople, onChat, onRefused, onNotice, onLobby }) {
    this.local = local;
    this.levels = levels;
    this.tiles = tiles;
    this.onCount = onCount;
    this.onConnection = onConnection;
    this.onEnd = onEnd;
    this.onPeople = onPeople ?? (() => {});
    this.onChat = onChat ?? (() => {});
    this.onRefused = onRefused ?? (() => {});
    this.onNotice = onNotice ?? (() => {});
    this.onLobby = onLobby ?? (() => {});
    /** @type {(text: string) => void} what screen readers should hear (joins, leaves, hands) */
    this.onAnnounce = () => {};
    /** Whether the meeting is locked (only hosts get new seats). */
    this.locked = false;
    /** Whether guests wait in the lobby until a host admits them. */
    this.lobby = false;
    /** @type {import("./protocol.js").WaitingView[]} for hosts: who waits in the lobby */
    this.waiting = [];
    /** @type {string | null} the host who turned us away from the lobby */
    this.deniedBy = null;
    this.me = null;
    this.participants = new Map();
    this.peers = new Map();
    this.iceServers = [];
    this.mode = "mesh";
    this.sfu = null;
    /** The signaling URL the SFU link was made through (its node, in a cluster). */
    this.sfuVia = "";
    /// Per participant: "mesh" or "sfu", the path their tile shows.
    this.shownVia = new Map();
    this.sfuShown = new Map();
    this.sfuAvailable = new Map();
    this.promotion = null;
    this.promoting = false;
    this.sfuClosing = null;
    this.removedBy = null;
    this.meter = new Meter();
    /** @type {(() => void) | null} told when our share starts or stops by itself */
    this.onScreenChange = null;
    /** @type {(() => void) | null} told when our microphone or camera changed without a click (a host muted us) */
    this.onLocalChange = null;
    /** @type {Map<string, MediaStream>} each sharer's screen as it reaches us in the mesh */
    this.screens = new Map();
    /** @type {Map<string, MediaStream>} the same through the SFU */
    this.sfuScreens = new Map();
    /** Low-bandwidth mode: we receive audio, and video from the dominant speaker only. */
    this.lowBandwidth = false;
    /** @type {string | null} the latest dominant speaker other than us: whose video low-bandwidth mode keeps */
    this.speaker = null;
    /** @type {(() => void) | null} told (once per call) when our downlink looks too thin for everyone's video */
    this.onThinDownlink = null;
    /** Quality rounds in a row in which most of what reaches us was poor or lost. */
    this.thinRounds = 0;
    this.thinTold = false;
    /** @type {Map<string, string>} SFU receive slots (mid) that carry nothing for now, and why */
    this.sfuPaused = new Map();
    this.qualityTimer = setInterval(() => this.updateQuality(), QUALITY_EVERY_MS);
    /// Whether media still reaches us on any connection (see flow.js).
    this.flow = new Flow();
    /** @type {Promise<string[]>} our host addresses, as the browser gathered them when the call began or last reconnected */
    this.addresses = hostAddresses();
    this.flowTimer = setInterval(() => this.watchFlow(), FLOW_EVERY_MS);
    this.signaling = new Signaling(
      room,
      (resume) => protocol.join(invite, name, local.audioOn, local.videoOn, resume),
      {
        onWelcome: (m, resumed) => this.welcome(m, resumed),
        onMessage: (m) => this.message(m),
        onState: (s) => this.onConnection(s),
        onEnd: (reason) => this.ended(reason),
      },
      nodes ?? [],
    );
  }

  welcome(m, resumed) {
    this.onLobby(null);
    this.iceServers = m.ice_servers;
    this.locked = !!m.locked;
    this.lobby = !!m.lobby;
    this.waiting = m.waiting ?? [];
    /** Who may share a screen: "everyone" or "hosts". */
    this.share = m.share ?? "everyone";
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
    // Media that stopped everywhere before this reconnection means our network changed
    // (see flow.js): every path starts again from the new address as soon as the browser
    // has one, rather than after ICE notices, seconds later.
    const moved = resumed && this.flow.stalled;
    if (moved) this.restartMedia();
    else if (resumed) {
      // Signals sent while we were away may be lost: restart any pair that is not up.
      for (const peer of this.peers.values()) {
        if (!["connected", "connecting", "new"].includes(peer.pc.connectionState)) peer.restartIce();
      }
    }
    // What we send may have changed while the node could not hear us.
    this.signaling.send(protocol.media(this.local.audioOn, this.local.videoOn, !!this.local.screen));
    // A new seat publishes afresh; so does a seat resumed through another node of a cluster
    // (our media ends at the node our socket is on, and the old one may be gone).
    if (this.sfu && (!resumed || this.sfuVia !== this.signaling.url)) {
      if (resumed) log("info", "sfu: our node changed: publishing through the new one");
      this.sfu.close();
      this.sfu = null;
    }
    this.applyMode();
    this.changed();
    this.onChat(m.chat ?? []);
  }

  /// Moves towards the path the room's mode asks for.
  applyMode() {
    if (this.mode === "sfu" && !this.sfu) {
      log("info", "switching to the SFU");
      const link = new SfuLink({
        local: this.local,
        iceServers: this.iceServers,
        send: (m) => this.signaling.send(m),
        onStreams: (streams) => this.sfuStreams(streams),
        onScreens: (screens) => this.sfuScreensChanged(screens),
        // The relay is lost (its node died, or the network changed): publish again.
        onFailed: () => {
          if (this.sfu !== link || this.mode !== "sfu") return;
          log("warn", "sfu: connection failed: publishing again");
          this.sfu.close();
          this.sfu = null;
          this.applyMode();
        },
      });
      this.sfu = link;
      this.sfuVia = this.signaling.url;
      this.sfu.start().catch((e) => log("warn", "SFU offer failed", e));
      this.lastView = "";
      this.viewTimer ??= setInterval(() => this.reportView(), VIEW_EVERY_MS);
    } else if (this.mode === "mesh" && this.sfu) {
      log("info", "switching back to the mesh");
      for (const view of this.participants.values()) this.connectMesh(view);
      this.schedulePromotion();
    }
  }

  /// Streams available through the SFU, per participant. A tile moves to one only once it
  /// decodes (see `promote`).
  sfuStreams(streams) {
    this.sfuAvailable = streams;
    // Tiles already on the SFU follow their slots' tracks (a slot can be reassigned).
    for (const [id, tracks] of streams) {
      if (this.shownVia.get(id) !== "sfu") continue;
      const key = tracks.map((t) => t.id).sort().join();
      if (this.sfuShown.get(id) !== key) {
        this.sfuShown.set(id, key);
        this.show(id, new MediaStream(tracks), "sfu");
      }
    }
    this.schedulePromotion();
  }

  /// Screens shared with us through the SFU, per sharer: a stream is kept while its tracks
  /// stay the same, so that a tile is not reset at every slot notice.
  sfuScreensChanged(screens) {
    const next = new Map();
    for (const [id, tracks] of screens) {
      const old = this.sfuScreens.get(id);
      const same = old && old.getTracks().length === tracks.length && tracks.every((t) => old.getTracks().includes(t));
      next.set(id, same && old ? old : new MediaStream(tracks));
    }
    this.sfuScreens = next;
    this.showScreens();
  }

  /// Tells the SFU how tall (in device pixels) each participant's video and each shared
  /// screen is on our screen, so that it sends the simulcast layer that fills it and no more.
  reportView() {
    if (!this.sfu) {
      clearInterval(this.viewTimer);
      this.viewTimer = null;
      return;
    }
    const px = (/** @type {number} */ css) => Math.round(css * devicePixelRatio);
    // In low-bandwidth mode every camera but the speaker's is reported as not shown
    // (height 0): the relay sends none of them.
    const cameras = [...this.participants.keys()]
      .map((id) => ({ participant: id, height: this.speakerOnly(id) ? 0 : px(this.tiles.height(id)) }))
      .filter((t) => t.height > 0 || this.speakerOnly(t.participant));
    const screens = this.tiles.screenIds().filter((id) => id !== this.me?.id).map((id) => ({ participant: id, screen: true, height: px(this.tiles.screenHeight(id)) }));
    const tiles = [...cameras, ...screens.filter((t) => t.height > 0)];
    const text = JSON.stringify(tiles);
    if (text === this.lastView) return;
    this.lastView = text;
    this.signaling.send(protocol.sfuView(tiles));
  }

  schedulePromotion() {
    this.promotion ??= setInterval(() => this.promote(), 50);
  }

  /// Make-before-break: moves each participant's tile to the path the mode asks for as soon
  /// as that path decodes their media (video frames, or audio when their camera is off),
  /// then closes the old path to them.
  async promote() {
    if (this.promoting) return;
    this.promoting = true;
    try {
      await this.promoteOnce();
    } finally {
      this.promoting = false;
    }
  }

  async promoteOnce() {
    const want = this.mode;
    const pending = [...this.participants.values()].filter((p) => (this.shownVia.get(p.id) ?? "mesh") !== want);
    if (!pending.length) {
      clearInterval(this.promotion);
      this.promotion = null;
      this.closeSfuIfUnused();
      return;
    }
    const stats = want === "sfu" ? await (this.sfu?.stats() ?? []) : await Promise.all([...this.peers.values()].map((p) => p.stats()));
    for (const view of pending) {
      const s = stats.find((x) => x.id === view.id);
      // Video that will not come on the new path (paused by the relay, or low-bandwidth
      // mode) is not waited for.
      const video = view.video && !this.heldBack(view.id, want);
      const decoding = s && (video ? s.framesDecoded > 0 : view.audio ? s.totalSamplesReceived > 0 : s.connectionState === "connected");
      if (!decoding || this.mode !== want) continue;
      if (want === "sfu") {
        const tracks = this.sfuAvailable?.get(view.id);
        if (!tracks?.length) continue;
        this.sfuShown.set(view.id, tracks.map((t) => t.id).sort().join());
        this.show(view.id, new MediaStream(tracks), "sfu");
        const old = this.peers.get(view.id);
        setTimeout(() => {
          if (this.mode === "sfu" && this.peers.get(view.id) === old) {
            old?.close();
            this.peers.delete(view.id);
          }
        }, OLD_PATH_GRACE_MS);
      } else {
        const peer = this.peers.get(view.id);
        if (!peer) continue;
        this.show(view.id, peer.stream, "mesh");
      }
    }
  }

  show(id, stream, via) {
    this.shownVia.set(id, via);
    this.tiles.show(id, stream);
    this.levels.watch(id, stream, speakingDetector((on) => {
      this.tiles.speaking(id, on);
      // In the mesh nobody else hears everyone: the latest speaker we hear is the dominant one.
      if (on && this.mode === "mesh" && this.tiles.dominantId() !== id) {
        this.tiles.dominant(id);
        this.speakerChanged(id);
      }
    }));
    log("info", `${id}: shown via ${via}`);
  }

  /// Back in mesh mode, the SFU connection goes once every tile shows a mesh stream.
  closeSfuIfUnused() {
    if (!this.sfu || this.mode !== "mesh" || this.sfuClosing) return;
    const stillSfu = [...this.participants.keys()].some((id) => this.shownVia.get(id) === "sfu");
    if (stillSfu) return;
    this.sfuClosing = setTimeout(() => {
      this.sfuClosing = null;
      if (this.mode === "mesh" && this.sfu) {
        this.sfu.close();
        this.sfu = null;
      }
    }, OLD_PATH_GRACE_MS);
  }

  message(m) {
    switch (m.type) {
      case "joined":
        this.arrive(m.participant);
        this.changed();
        break;
      case "updated":
        if (this.participants.has(m.participant.id)) {
          const before = this.participants.get(m.participant.id);
          if (before.hand == null && m.participant.hand != null) this.onAnnounce(t("announce.hand", { name: m.participant.name }));
          this.participants.set(m.participant.id, m.participant);
          this.tiles.upsert(m.participant, this.tileOptions());
        } else if (m.participant.id === this.me?.id) {
          // Our own hand (and role) as the node has it; what we send we know better.
          const promoted = m.participant.role !== this.me.role;
          this.me = { ...this.me, hand: m.participant.hand, role: m.participant.role };
          this.tiles.upsert(this.me, { self: true });
          // Made a host: the others' tiles get the host's actions.
          if (promoted) for (const p of this.participants.values()) this.tiles.upsert(p, this.tileOptions());
        }
        this.people();
        break;
      case "chat":
        this.onChat([m]);
        break;
      case "error":
        this.onRefused(m);
        break;
      case "left":
        log("info", `${m.participant}: left (${m.reason})`);
        if (m.participant === this.me?.id) break; // The meeting ended: the close follows.
        if (this.participants.has(m.participant)) this.onAnnounce(t("announce.left", { name: this.nameOf(m.participant) }));
        this.drop(m.participant);
        if (m.participant === this.speaker) this.speaker = null;
        this.changed();
        break;
      case "muted":
        // A host asked us to mute (or to stop our camera): we do; only we turn it on again.
        (m.kind === "video" ? this.setVideo(false) : this.setAudio(false))
          .then(() => this.onLocalChange?.())
          .catch((e) => log("warn", "could not turn off what a host asked", e));
        this.onNotice(t(m.kind === "video" ? "notice.camera_stopped" : "notice.muted", { by: m.by }));
        break;
      case "joined-muted":
        // The meeting is large: we start muted, and may unmute.
        this.setAudio(false)
          .then(() => this.onLocalChange?.())
          .catch((e) => log("warn", "could not start muted", e));
        this.onNotice(tn("notice.joined_muted", m.above));
        break;
      case "locked":
        this.locked = m.locked;
        this.onNotice(t(m.locked ? "notice.locked" : "notice.unlocked", { by: m.by }));
        this.people();
        break;
      case "signal":
        this.peers.get(m.from)?.signal({ description: m.description, candidate: m.candidate });
        break;
      case "mode":
        this.mode = m.mode;
        this.applyMode();
        break;
      case "sfu-answer":
        this.sfu?.answer(m.sdp).catch((e) => log("warn", "SFU answer refused", e));
        break;
      case "sfu-slots":
        this.sfu?.setSlots(m.slots);
        break;
      case "sfu-paused": {
        this.sfuPaused = new Map(m.slots.map((/** @type {{ mid: string, reason: string }} */ s) => [s.mid, s.reason]));
        if (m.slots.some((/** @type {{ reason: string }} */ s) => s.reason === "bandwidth")) this.thinDownlink();
        this.showNotes();
        break;
      }
      case "sfu-layers":
        this.sfu?.setLayers(m.mid, m.active).catch((e) => log("warn", "could not pause or resume simulcast layers", e));
        break;
      case "speaker":
        this.tiles.dominant(m.participant);
        this.speakerChanged(m.participant);
        break;
      case "removed":
        this.removedBy = m.by;
        break;
      case "lobby":
        this.onLobby(!!m.host_present);
        break;
      case "waiting": {
        const before = new Set(this.waiting.map((g) => g.id));
        const arrived = m.guests.filter((/** @type {{ id: string }} */ g) => !before.has(g.id));
        this.waiting = m.guests;
        if (arrived.length > 0) {
          const names = arrived.map((/** @type {{ name: string }} */ g) => g.name).join(", ");
          this.onNotice(tn("notice.waiting", arrived.length, { names }));
        }
        this.people();
        break;
      }
      case "denied":
        this.deniedBy = m.by;
        break;
      default:
        break;
    }
  }

  tileOptions() {
    return { onRemove: this.me?.role === "host" ? (id) => this.confirmRemove(id) : null };
  }

  /// Hosts: removes `id` after asking (a link is often shared: the removal bars this link
  /// from that network only).
  confirmRemove(id) {
    const name = this.nameOf(id);
    if (confirm(t("host.remove_confirm", { name }))) this.remove(id);
  }

  /// Hosts: removes `id` and revokes the link made for them alone, after asking.
  confirmRemoveAndRevoke(id) {
    const name = this.nameOf(id);
    if (confirm(t("host.revoke_confirm", { name }))) this.signaling.send(protocol.remove(id, true));
  }

  arrive(view) {
    if (!this.participants.has(view.id) && this.me) this.onAnnounce(t("announce.joined", { name: view.name }));
    this.participants.set(view.id, view);
    this.tiles.upsert(view, this.tileOptions());
    if (this.mode === "mesh") this.connectMesh(view);
  }

  connectMesh(view) {
    if (this.peers.has(view.id)) return;
    const peer = new Peer({
      id: view.id,
      polite: number(this.me.id) > number(view.id),
      iceServers: this.iceServers,
      local: this.local,
      send: (payload) => this.signaling.send(protocol.signal(view.id, payload)),
      onScreen: (stream) => {
        this.screens.set(view.id, stream);
        this.showScreens();
      },
      onTrack: (stream) => {
        if (this.shownVia.get(view.id) === "sfu") {
          this.schedulePromotion(); // Returning to the mesh: shown once it decodes.
          return;
        }
        this.show(view.id, stream, "mesh");
      },
      onState: () => {},
    });
    this.peers.set(view.id, peer);
    if (this.speakerOnly(view.id)) peer.receiveCamera(false);
    setTimeout(() => {
      if (this.mode === "mesh" && this.peers.get(view.id) === peer && peer.pc.connectionState !== "connected") {
        log("warn", `${view.id}: no direct connection after ${MESH_CONNECT_TIMEOUT_MS / 1000} s; asking for the SFU`);
        this.signaling.send(protocol.meshFailed(view.id));
      }
    }, MESH_CONNECT_TIMEOUT_MS);
  }

  drop(id) {
    this.screens.delete(id);
    this.sfuScreens.delete(id);
    this.tiles.removeScreen(id);
    this.peers.get(id)?.close();
    this.peers.delete(id);
    this.participants.delete(id);
    this.shownVia.delete(id);
    this.sfuShown.delete(id);
    this.levels.unwatch(id);
    this.tiles.remove(id);
  }

  /// A tile for each screen being shared (ours included), fed with what reaches us.
  showScreens() {
    const sharing = new Set([...this.participants.values()].filter((p) => p.screen).map((p) => p.id));
    for (const id of this.tiles.screenIds()) {
      if (!sharing.has(id) && !(id === this.me?.id && this.local.screen)) this.tiles.removeScreen(id);
    }
    for (const id of sharing) {
      const name = this.participants.get(id)?.name ?? "";
      this.tiles.upsertScreen(id, name, false);
      // The path the meeting is on, or the other one until that path carries the share.
      const [first, second] = this.mode === "sfu" ? [this.sfuScreens, this.screens] : [this.screens, this.sfuScreens];
      const stream = first.get(id) ?? second.get(id);
      if (stream && this.tiles.showScreen(id, stream)) log("info", `${id}: showing their screen`);
    }
    if (this.me && this.local.screen) {
      this.tiles.upsertScreen(this.me.id, this.me.name, true);
      this.tiles.showScreen(this.me.id, this.local.screen);
    }
  }

  /// Starts or stops sharing our screen. Every connection (each mesh pair, and the one to
  /// the SFU) swaps the track in, without renegotiating; the node hears of it in `media`
  /// (and has the SFU forward it to everyone). Returns whether we share now.
  async setScreen(on) {
    if (on) {
      log("info", "asking the browser for a screen to share");
      const stream = await this.local.startScreen(() => this.setScreen(false));
      if (!stream) return false;
      const settings = stream.getVideoTracks()[0]?.getSettings();
      log("info", `sharing the screen (${settings?.width}x${settings?.height})`);
    } else {
      this.local.stopScreen();
      log("info", "stopped sharing the screen");
    }
    for (const peer of this.peers.values()) await peer.setScreen();
    await this.sfu?.setScreen();
    log("info", "screen share handed to every connection");
    this.announce(); // which shows the screens too (`people`)
    this.onScreenChange?.();
    return !!this.local.screen;
  }

  /// Everyone's state, for the participant list.
  people() {
    if (this.me) this.onPeople(this.me, [...this.participants.values()]);
    this.showScreens();
  }

  /// The name of participant `id` (or "someone" once they have left).
  nameOf(id) {
    return this.participants.get(id)?.name ?? (id === this.me?.id ? this.me.name : t("call.someone_who_left"));
  }

  /// After the set of participants changed: the count, and what each connection may send.
  changed() {
    this.people();
    this.onCount(this.participants.size + 1);
    const limits = meshLimits(this.peers.size);
    for (const peer of this.peers.values()) peer.setLimits(limits);
  }

  async setAudio(on) {
    const track = await this.local.setAudio(on);
    if (track !== undefined) {
      for (const peer of this.peers.values()) await peer.setTrack("audio", track);
      await this.sfu?.setTrack("audio", track);
    }
    this.levels.watch(this.me.id, this.local.stream, speakingDetector((s) => this.tiles.speaking(this.me.id, s)));
    this.announce();
    return this.local.audioOn;
  }

  async setVideo(on) {
    const track = await this.local.setVideo(on);
    for (const peer of this.peers.values()) await peer.setTrack("video", track);
    await this.sfu?.setTrack("video", track);
    this.announce();
    return this.local.videoOn;
  }

  /// Switches to another camera or microphone mid-call: every connection sends the new
  /// track in place of the old one, without renegotiating.
  async setDevice(kind, deviceId) {
    const track = await this.local.choose(kind, deviceId);
    if (track === undefined) return;
    for (const peer of this.peers.values()) await peer.setTrack(kind, track);
    await this.sfu?.setTrack(kind, track);
    if (kind === "video") this.tiles.show(this.me.id, this.local.stream);
    else this.levels.watch(this.me.id, this.local.stream, speakingDetector((s) => this.tiles.speaking(this.me.id, s)));
    this.announce();
  }

  announce() {
    this.me = { ...this.me, audio: this.local.audioOn, video: this.local.videoOn };
    this.tiles.upsert(this.me, { self: true });
    this.people();
    this.signaling.send(protocol.media(this.local.audioOn, this.local.videoOn, !!this.local.screen));
  }

  remove(id) {
    this.signaling.send(protocol.remove(id));
  }

  /// Hosts: ask participant `id`, or everyone else ("all"), to mute (or to stop their
  /// camera, `kind` "video").
  /** @param {string} id @param {"audio" | "video"} [kind] */
  mute(id, kind = "audio") {
    return this.signaling.send(protocol.mute(id, kind));
  }

  /// Hosts: lock or unlock the meeting.
  setLocked(locked) {
    return this.signaling.send(protocol.lock(locked));
  }

  /// Hosts: make participant `id` a host for this meeting.
  /// Hosts: lets a guest waiting in the lobby (or "all") in.
  admit(id) {
    return this.signaling.send(protocol.admit(id));
  }

  /// Hosts: turns a guest waiting in the lobby away.
  deny(id) {
    return this.signaling.send(protocol.deny(id));
  }

  makeHost(id) {
    return this.signaling.send(protocol.makeHost(id));
  }

  /// Hosts: end the meeting for everyone.
  endForAll() {
    return this.signaling.send(protocol.end());
  }

  /// Sends a chat message to everyone, or privately to participant `to`; false if the
  /// connection to the node is down (the text stays where it was typed).
  sendChat(text, to = null) {
    return this.signaling.send(protocol.chat(text, to));
  }

  setHand(raised) {
    return this.signaling.send(protocol.hand(raised));
  }

  lowerHand(id) {
    return this.signaling.send(protocol.lowerHand(id));
  }

  leave() {
    this.signaling.leave();
  }

  ended(reason) {
    clearInterval(this.promotion);
    clearInterval(this.viewTimer);
    clearInterval(this.qualityTimer);
    clearInterval(this.flowTimer);
    for (const id of [...this.peers.keys()]) this.drop(id);
    this.sfu?.close();
    this.sfu = null;
    this.local.stop();
    const by = this.removedBy ? t("ended.removed", { by: this.removedBy }) : this.deniedBy ? t("ended.denied", { by: this.deniedBy }) : null;
    this.onEnd(by ?? reason);
  }

  /// What a tile's popover shows: for another participant, the path their media takes to us
  /// and what arrives; for ourselves (`id` is ours), what we send. `reports` may hold the
  /// stats already read (pc → report) for this round.
  async detail(id, reports = new Map()) {
    const read = async (/** @type {RTCPeerConnection} */ pc) => {
      if (!reports.has(pc)) reports.set(pc, await pc.getStats());
      return reports.get(pc);
    };
    if (id === this.me?.id) {
      const pcs = this.sfu ? [this.sfu.pc] : [...this.peers.values()].map((p) => p.pc);
      const layers = [];
      let loss = null;
      let rtt = null;
      for (const pc of pcs) {
        const report = await read(pc);
        const sent = this.meter.outgoing(report);
        layers.push(...sent);
        // Loss as the other end reports it, or as the retransmissions it asked for show it.
        const resent = Math.max(0, ...sent.filter((l) => l.active).map((l) => l.resentPercent ?? 0));
        loss = Math.max(loss ?? 0, uplinkLoss(report) ?? 0, resent);
        rtt = Math.max(rtt ?? 0, pathOf(report)?.rtt ?? 0);
      }
      const path = this.sfu ? describePath(pathOf(await read(this.sfu.pc)), true) : pcs.length ? tn("path.direct_to", pcs.length) : t("path.nobody_yet");
      return { self: true, path, layers, lossPercent: pcs.length ? loss : null, rtt: pcs.length ? rtt : null, quality: quality(loss, rtt) };
    }
    const via = this.shownVia.get(id) ?? "mesh";
    const pc = via === "sfu" ? this.sfu?.pc : this.peers.get(id)?.pc;
    if (!pc) return null;
    const report = await read(pc);
    const mids = new Set((this.sfu?.slots ?? []).filter((s) => s.participant === id).map((s) => s.mid));
    const incoming = this.meter.incoming(report, via === "sfu" ? (mid) => mids.has(mid) : () => true);
    const path = pathOf(report);
    return {
      self: false,
      path: describePath(path, via === "sfu"),
      rtt: path?.rtt ?? null,
      layer: via === "sfu" ? layerName(incoming.height) : null,
      ...incoming,
      // Nothing arriving counts as lost only when something should: a microphone or a
      // camera on that is not paused on purpose.
      quality: quality(incoming.lossPercent, path?.rtt ?? null, {
        silent: incoming.silent && !!(this.participants.get(id)?.audio || (this.participants.get(id)?.video && !this.pausedBecause(id))),
        froze: incoming.froze,
      }),
    };
  }

  /// Every tile's quality indicator, from one read of each connection's stats; the notice
  /// on our own tile when what we send arrives poorly; and, when most of what reaches us
  /// has been poor or lost for three rounds, the suggestion of low-bandwidth mode.
  /// Asks the node whether it still hears us when media stops on every connection at once.
  watchFlow() {
    const pcs = [...this.peers.values()].map((p) => p.pc);
    if (this.sfu) pcs.push(this.sfu.pc);
    if (this.flow.update(newestPacket(pcs), performance.now())) {
      log("info", "media stopped on every connection: asking the node");
      this.signaling.probe();
    }
  }

  /// Our network changed: once the browser has an address other than those it had before
  /// (Chromium on Linux learns it ~2 s after the change, and ICE gathered before that offers
  /// the old one and fails at once; Firefox knows at once), every path starts again: the
  /// SFU link is made anew, and each direct pair restarts ICE. At most
  /// `NEW_ADDRESS_WAIT_MS` of waiting: a network that came back with the same address
  /// restarts then.
  async restartMedia() {
    const before = await this.addresses;
    const found = await newAddress(before, NEW_ADDRESS_WAIT_MS);
    this.addresses = found ? Promise.resolve(found) : hostAddresses();
    log("info", found ? `our network changed (${before.join(", ")} → ${found.join(", ")}): connecting again` : "our network came back: connecting again");
    for (const peer of this.peers.values()) peer.restartIce();
    if (this.sfu) {
      this.sfu.close();
      this.sfu = null;
      this.applyMode();
    }
  }

  async updateQuality() {
    if (!this.me) return;
    const reports = new Map();
    let others = 0;
    let bad = 0;
    for (const id of [this.me.id, ...this.participants.keys()]) {
      try {
        const d = await this.detail(id, reports);
        this.tiles.quality(id, d?.quality ?? null);
        if (id === this.me.id) this.tiles.note(id, d?.quality === "poor" ? t("tiles.uplink_poor") : null);
        else if (d) {
          others += 1;
          if (d.quality === "poor" || d.quality === "lost") bad += 1;
        }
      } catch (e) {
        log("warn", `stats for ${id} failed`, e);
      }
    }
    this.thinRounds = others > 0 && bad * 2 > others ? this.thinRounds + 1 : 0;
    if (this.thinRounds >= 3) this.thinDownlink();
    this.showNotes();
  }

  /// Suggests low-bandwidth mode, once per call, unless it is on already.
  thinDownlink() {
    if (this.lowBandwidth || this.thinTold) return;
    this.thinTold = true;
    this.onThinDownlink?.();
  }

  /// Turns low-bandwidth mode on or off: video from the dominant speaker only (the SFU
  /// stops the rest; in the mesh each pair stops sending us its camera).
  setLowBandwidth(on) {
    this.lowBandwidth = on;
    this.applyLowBandwidth();
  }

  /// A new dominant speaker: low-bandwidth mode follows them (not us: while we speak, the
  /// one before us stays).
  speakerChanged(id) {
    if (id === this.me?.id || id === this.speaker) return;
    this.speaker = id;
    if (this.lowBandwidth) this.applyLowBandwidth();
  }

  /// Whether low-bandwidth mode holds `id`'s camera back: it is on, and they are not the speaker.
  speakerOnly(id) {
    return this.lowBandwidth && id !== this.speaker;
  }

  applyLowBandwidth() {
    for (const [id, peer] of this.peers) peer.receiveCamera(!this.speakerOnly(id));
    if (this.sfu) this.reportView();
    this.showNotes();
  }

  /// Why a participant's camera does not reach us although it is on, if it does not.
  pausedBecause(id) {
    return this.participants.get(id)?.video ? this.heldBack(id, this.shownVia.get(id) ?? "mesh") : null;
  }

  /// Why `id`'s camera would not reach us on path `via` ("mesh" or "sfu"), if it would not:
  /// "bandwidth" (the SFU paused its slot for our downlink) or "hidden" (low-bandwidth mode).
  heldBack(id, via) {
    return (via === "sfu" ? this.slotPause(id) : null) ?? (this.speakerOnly(id) ? "hidden" : null);
  }

  /// Why the relay sends nothing on the slot that carries `id`'s camera, if it does not.
  slotPause(id) {
    const slot = this.sfu?.slots.find((s) => s.participant === id && s.kind === "video");
    return (slot && this.sfuPaused.get(slot.mid)) ?? null;
  }

  /// The line on each tile whose video is paused, saying why.
  showNotes() {
    for (const id of this.participants.keys()) {
      const reason = this.pausedBecause(id);
      this.tiles.note(id, reason === "bandwidth" ? t("tiles.paused_bandwidth") : reason ? t("tiles.paused_low_bandwidth") : null);
    }
  }

  /// Figures for every connection (used by the tests, handy in the console).
  /// One entry per other participant, from the path their tile shows.
  async stats() {
    const mesh = await Promise.all([...this.peers.values()].map((p) => p.stats()));
    const sfu = this.sfu ? await this.sfu.stats() : [];
    const shown = (s, via) => (this.shownVia.get(s.id) ?? "mesh") === via;
    return [...mesh.filter((s) => shown(s, "mesh")), ...sfu.filter((s) => shown(s, "sfu"))];
  }
}
