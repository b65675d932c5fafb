// @ts-check
// The tile grid: one tile per participant, ours first. Names are only ever text. The state
// others can see (microphone, camera, reconnecting, speaking) is on the tile both as data
// attributes (for styling) and as words.

import { el } from "../dom.js";
import { initials } from "./panel.js";
import { number, t, tn } from "../i18n.js";

/** How long the popover waits between refreshes while open. */
const DETAIL_EVERY_MS = 1_000;
/** How often each tile checks whether its video is actually playing. */
const FRAMES_EVERY_MS = 1_000;
/** At most this many tiles on screen; the others are counted on a "N more" tile. */
export const MAX_TILES = 16;

/**
 * Starts counting the frames `video` presents (`requestVideoFrameCallback`), for browsers
 * whose playback-quality figures stay at zero for a MediaStream (Firefox).
 * @param {HTMLVideoElement} video
 */
function countFrames(video) {
  const v = /** @type {any} */ (video);
  v.framesPainted = 0;
  if (typeof v.requestVideoFrameCallback !== "function") return;
  const next = () => {
    v.framesPainted += 1;
    v.requestVideoFrameCallback(next);
  };
  v.requestVideoFrameCallback(next);
}

/** Frames `video` has decoded or shown so far, by whatever count the browser keeps. */
export function framesOf(/** @type {HTMLVideoElement} */ video) {
  const v = /** @type {any} */ (video);
  const decoded = video.getVideoPlaybackQuality?.().totalVideoFrames ?? 0;
  return Math.max(decoded, v.mozDecodedFrames ?? 0, v.framesPainted ?? 0, decoded === 0 && video.videoWidth ? 1 : 0);
}

export class Tiles {
  /**
   * @param {HTMLElement} container
   * @param {{ detail?: (id: string) => Promise<any> }} [options] where a tile's connection
   *   popover gets its figures (`Call.detail`)
   */
  constructor(container, { detail } = {}) {
    this.container = container;
    /** @type {Map<string, { node: HTMLElement, video: HTMLVideoElement }>} */
    this.tiles = new Map();
    /** @type {Map<string, { node: HTMLElement, video: HTMLVideoElement }>} screen shares, by sharer */
    this.screens = new Map();
    this.detail = detail ?? null;
    /** @type {string | null} the audio output chosen in the call, if any */
    this.sinkId = null;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.detailTimer = undefined;
    /** Per tile: the decoded-frame count at the last check. */
    /** @type {Map<string, number>} */
    this.frames = new Map();
    this.more = el("button", { type: "button", class: "tile more", hidden: true });
    this.container.append(this.more);
    this.framesTimer = setInterval(() => this.checkFrames(), FRAMES_EVERY_MS);
  }

  /// What "N more" does when clicked (e.g. open the participant list).
  onMore(/** @type {() => void} */ action) {
    this.more.onclick = action;
  }

  /// Marks each tile showing moving video or not (`data-showing`), so that a tile whose
  /// video is not forwarded to us, is off, or does not decode yet shows the person's
  /// initials instead of a black picture; then decides which tiles fit on screen.
  checkFrames() {
    for (const [id, tile] of this.tiles) {
      const frames = framesOf(tile.video);
      const before = this.frames.get(id);
      this.frames.set(id, frames);
      const self = tile.node.classList.contains("self");
      const moving = tile.node.dataset.video !== "off" && (self ? tile.video.videoWidth > 0 : before !== undefined && frames > before);
      tile.node.dataset.showing = moving ? "yes" : "no";
    }
    this.paginate();
  }

  /// At most [`MAX_TILES`] tiles: ourselves, then those showing video, raised hands, and the
  /// rest in order of arrival; the others are counted on the "N more" tile.
  paginate() {
    const rank = (/** @type {HTMLElement} */ n) =>
      n.classList.contains("self") ? 0 : n.classList.contains("dominant") ? 1 : n.dataset.showing === "yes" ? 2 : n.dataset.hand ? 3 : 4;
    const nodes = [...this.tiles.values()].map((t) => t.node);
    const order = nodes.map((n, i) => ({ n, i })).sort((a, b) => rank(a.n) - rank(b.n) || a.i - b.i);
    const fits = order.length <= MAX_TILES ? order.length : MAX_TILES - 1;
    order.forEach(({ n }, i) => {
      n.hidden = i >= fits;
    });
    const hiddenCount = order.length - fits;
    this.more.hidden = hiddenCount === 0;
    this.more.textContent = tn("tiles.more", hiddenCount);
    this.more.setAttribute("aria-label", tn("tiles.more_label", hiddenCount));
    this.container.append(this.more);
  }

  /// Adds or updates the tile for `view` ({id, name, audio, video, connected}).
  /**
   * @param {import("./protocol.js").ParticipantView} view
   * @param {{ self?: boolean, onRemove?: ((id: string) => void) | null }} [options]
   */
  upsert(view, { self = false, onRemove = null } = {}) {
    let tile = this.tiles.get(view.id);
    if (!tile) {
      const video = /** @type {HTMLVideoElement} */ (el("video", { autoplay: true, playsinline: true }));
      countFrames(video);
      const sink = /** @type {any} */ (video);
      if (this.sinkId && typeof sink.setSinkId === "function") sink.setSinkId(this.sinkId).catch(() => {});
      video.muted = self; // Never play our own microphone back to us.
      const node = el(
        "figure",
        { class: self ? "tile self" : "tile", "data-participant": view.id, "data-showing": "no", tabindex: "0" },
        video,
        el("div", { class: "avatar", "aria-hidden": "true" }),
        el("p", { class: "note", hidden: true }),
        el(
          "figcaption",
          {},
          el("span", { class: "name" }),
          el("span", { class: "mic-off" }, t("people.muted")),
          el("span", { class: "hand" }, t("people.hand_raised")),
          el("span", { class: "away" }, t("people.reconnecting")),
        ),
      );
      if (this.detail) {
        const popover = el("div", { class: "popover", role: "dialog", "aria-label": t("tiles.details"), hidden: true });
        const button = el(
          "button",
          { type: "button", class: "info", "aria-expanded": "false", title: self ? t("tiles.what_you_send") : t("tiles.details"), onclick: () => this.toggleDetail(view.id) },
          el("span", { class: "quality-dot", "aria-hidden": "true" }),
          el("span", { class: "sr-only" }, t("tiles.details")),
        );
        node.append(button, popover);
      }
      if (onRemove) {
        node.append(el("button", { type: "button", class: "remove", title: t("tiles.remove_title"), onclick: () => onRemove(view.id) }, t("people.remove")));
      }
      tile = { node, video };
      this.tiles.set(view.id, tile);
      if (self) this.container.prepend(node);
      else this.container.append(node);
    }
    const node = tile.node;
    const part = (/** @type {string} */ css) => /** @type {HTMLElement} */ (node.querySelector(css));
    const name = self ? t("people.you", { name: view.name }) : view.name;
    part(".name").textContent = name;
    part(".avatar").textContent = initials(view.name);
    if (view.hand != null) tile.node.dataset.hand = String(view.hand);
    else delete tile.node.dataset.hand;
    tile.node.dataset.audio = view.audio ? "on" : "off";
    tile.node.dataset.video = view.video ? "on" : "off";
    tile.node.dataset.connected = view.connected === false ? "no" : "yes";
    part(".mic-off").hidden = view.audio;
    part(".away").hidden = view.connected !== false;
    const states = [view.audio ? null : t("tiles.state_muted"), view.video ? null : t("tiles.state_camera_off"), view.hand != null ? t("tiles.state_hand") : null];
    tile.node.setAttribute("aria-label", [name, ...states.filter(Boolean)].join(", "));
    return tile;
  }

  /// The tile of `id`'s screen share, large by default (ours as a preview, `self`).
  upsertScreen(id, name, self) {
    let tile = this.screens.get(id);
    if (!tile) {
      const video = /** @type {HTMLVideoElement} */ (el("video", { autoplay: true, playsinline: true }));
      countFrames(video);
      video.muted = self;
      const node = el(
        "figure",
        { class: self ? "tile screen self" : "tile screen", "data-screen": id },
        video,
        el("figcaption", {}, el("span", { class: "name" })),
      );
      tile = { node, video };
      this.screens.set(id, tile);
      this.container.prepend(node);
    }
    const label = self ? t("tiles.your_screen") : t("tiles.screen_of", { name });
    const caption = tile.node.querySelector(".name");
    if (caption) caption.textContent = label;
    tile.node.setAttribute("aria-label", label);
    return tile;
  }

  /// Shows `stream` in `id`'s screen tile; whether it was not shown already.
  showScreen(id, stream) {
    const tile = this.screens.get(id);
    if (!tile || tile.video.srcObject === stream) return false;
    tile.video.srcObject = stream;
    return true;
  }

  removeScreen(id) {
    this.screens.get(id)?.node.remove();
    this.screens.delete(id);
  }

  /// The height of `id`'s screen tile in CSS pixels (0 if hidden).
  screenHeight(id) {
    return this.screens.get(id)?.video.clientHeight ?? 0;
  }

  /// Whose screens have tiles.
  screenIds() {
    return [...this.screens.keys()];
  }

  /// The quality indicator: "good", "fair", "poor", "lost", or null when nothing is known yet.
  quality(id, level) {
    const tile = this.tiles.get(id);
    if (!tile) return;
    if (level) tile.node.dataset.quality = level;
    else delete tile.node.dataset.quality;
    const button = tile.node.querySelector(".info");
    if (button) button.setAttribute("aria-label", level ? t("tiles.details_level", { level: t(`quality.${level}`) }) : t("tiles.details"));
  }

  /// A line on the tile saying why its video does not play, or that what we send arrives
  /// poorly (on our own); `null` removes it.
  note(id, text) {
    const note = this.tiles.get(id)?.node.querySelector(".note");
    if (!(note instanceof HTMLElement)) return;
    if ((note.textContent || null) === text) return;
    note.textContent = text ?? "";
    note.hidden = !text;
  }

  /// Opens (or closes) one tile's connection popover; it refreshes while open.
  toggleDetail(id) {
    const tile = this.tiles.get(id);
    const popover = tile?.node.querySelector(".popover");
    const button = tile?.node.querySelector(".info");
    if (!(popover instanceof HTMLElement) || !button || !this.detail) return;
    const open = popover.hidden;
    for (const other of this.container.querySelectorAll(".popover")) if (other instanceof HTMLElement) other.hidden = true;
    for (const other of this.container.querySelectorAll(".info")) other.setAttribute("aria-expanded", "false");
    clearInterval(this.detailTimer);
    if (!open) return;
    popover.hidden = false;
    button.setAttribute("aria-expanded", "true");
    const detail = this.detail;
    const refresh = async () => {
      if (popover.hidden || !popover.isConnected) {
        clearInterval(this.detailTimer);
        return;
      }
      const d = await detail(id).catch(() => null);
      popover.replaceChildren(...detailRows(d));
    };
    refresh();
    this.detailTimer = setInterval(refresh, DETAIL_EVERY_MS);
  }

  /// Plays everyone's audio on `sinkId` (an audio output device), where the browser can.
  async setSink(sinkId) {
    this.sinkId = sinkId;
    for (const { video } of this.tiles.values()) {
      const sink = /** @type {any} */ (video);
      if (typeof sink.setSinkId === "function") await sink.setSinkId(sinkId);
    }
  }

  show(id, stream) {
    const tile = this.tiles.get(id);
    if (tile && tile.video.srcObject !== stream) tile.video.srcObject = stream;
  }

  /// The tile's height on screen in CSS pixels (0 if hidden).
  height(id) {
    return this.tiles.get(id)?.video.clientHeight ?? 0;
  }

  /// The dominant speaker's id, or null before anyone spoke.
  dominantId() {
    return this.container.dataset.dominant ?? null;
  }

  /// Marks the dominant speaker (from the SFU): the large tile in speaker view.
  dominant(id) {
    for (const [tid, tile] of this.tiles) tile.node.classList.toggle("dominant", tid === id);
    this.container.dataset.dominant = id;
  }

  speaking(id, on) {
    this.tiles.get(id)?.node.classList.toggle("speaking", on);
  }

  remove(id) {
    this.tiles.get(id)?.node.remove();
    this.tiles.delete(id);
    this.frames.delete(id);
  }

  clear() {
    for (const id of [...this.tiles.keys()]) this.remove(id);
  }

  get size() {
    return this.tiles.size;
  }
}

const fmt = {
  ms: (/** @type {number | null | undefined} */ s) => (s == null ? "–" : t("unit.ms", { n: Math.round(s * 1000) })),
  kbps: (/** @type {number | null | undefined} */ k) => (k == null ? "–" : k >= 1000 ? t("unit.mbps", { n: number(Math.round(k / 100) / 10) }) : t("unit.kbps", { n: k })),
  fps: (/** @type {number | null | undefined} */ f) => (f == null ? "–" : t("unit.fps", { n: Math.round(f) })),
  loss: (/** @type {number | null | undefined} */ l) => (l == null ? "–" : t("unit.percent", { n: l })),
  size: (/** @type {number} */ w, /** @type {number} */ h) => (h ? `${w}×${h}` : t("detail.no_video")),
};

/**
 * The popover's contents: a definition list of what `Call.detail` found.
 * @param {any} d
 */
function detailRows(d) {
  if (!d) return [el("p", {}, t("detail.none"))];
  /** @type {[string, string][]} */
  const rows = [[t("detail.path"), d.path], [t("detail.rtt"), fmt.ms(d.rtt)]];
  if (d.self) {
    rows.push([t("detail.loss_received"), fmt.loss(d.lossPercent)]);
    for (const l of d.layers) {
      const parts = [fmt.size(l.width, l.height), fmt.fps(l.fps), fmt.kbps(l.kbps)];
      if (!l.active) parts.push(t("detail.paused"));
      if (l.limitedBy) parts.push(t("detail.limited_by", { reason: l.limitedBy }));
      rows.push([l.rid ? t("detail.sending_layer", { rid: l.rid }) : t("detail.sending"), parts.join(", ")]);
    }
  } else {
    rows.push(
      [t("detail.resolution"), fmt.size(d.width, d.height)],
      [t("detail.fps"), fmt.fps(d.fps)],
      [t("detail.bitrate"), fmt.kbps(d.kbps)],
      [t("detail.loss"), fmt.loss(d.lossPercent)],
    );
    if (d.jitterMs != null) rows.push([t("detail.jitter"), fmt.ms(d.jitterMs / 1000)]);
    rows.push([t("detail.codec"), d.codec ?? "–"]);
    if (d.layer) rows.push([t("detail.layer"), d.layer]);
  }
  rows.push([t("detail.quality"), t(`quality.${d.quality}`)]);
  return [el("dl", {}, ...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]))];
}
