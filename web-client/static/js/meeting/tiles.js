// The tile grid: one tile per participant, ours first. Names are only ever text. The state
// others can see (microphone, camera, reconnecting, speaking) is on the tile both as data
// attributes (for styling) and as words.

import { el } from "../dom.js";

export class Tiles {
  constructor(container) {
    this.container = container;
    this.tiles = new Map();
  }

  /// Adds or updates the tile for `view` ({id, name, audio, video, connected}).
  upsert(view, { self = false, onRemove = null } = {}) {
    let tile = this.tiles.get(view.id);
    if (!tile) {
      const video = el("video", { autoplay: true, playsinline: true });
      video.muted = self; // Never play our own microphone back to us.
      const node = el(
        "figure",
        { class: self ? "tile self" : "tile", "data-participant": view.id },
        video,
        el("div", { class: "avatar", "aria-hidden": "true" }),
        el("figcaption", {}, el("span", { class: "name" }), el("span", { class: "mic-off" }, "Muted"), el("span", { class: "away" }, "Reconnecting…")),
      );
      if (onRemove) {
        node.append(el("button", { type: "button", class: "remove", title: "Remove from the meeting", onclick: () => onRemove(view.id) }, "Remove"));
      }
      tile = { node, video };
      this.tiles.set(view.id, tile);
      if (self) this.container.prepend(node);
      else this.container.append(node);
    }
    const name = self ? `${view.name} (you)` : view.name;
    tile.node.querySelector(".name").textContent = name;
    tile.node.querySelector(".avatar").textContent = [...view.name.trim()][0]?.toUpperCase() ?? "?";
    tile.node.dataset.audio = view.audio ? "on" : "off";
    tile.node.dataset.video = view.video ? "on" : "off";
    tile.node.dataset.connected = view.connected === false ? "no" : "yes";
    tile.node.querySelector(".mic-off").hidden = view.audio;
    tile.node.querySelector(".away").hidden = view.connected !== false;
    tile.node.setAttribute("aria-label", `${name}${view.audio ? "" : ", muted"}${view.video ? "" : ", camera off"}`);
    return tile;
  }

  show(id, stream) {
    const tile = this.tiles.get(id);
    if (tile && tile.video.srcObject !== stream) tile.video.srcObject = stream;
  }

  /// The tile's height on screen in CSS pixels (0 if hidden).
  height(id) {
    return this.tiles.get(id)?.video.clientHeight ?? 0;
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
  }

  clear() {
    for (const id of [...this.tiles.keys()]) this.remove(id);
  }

  get size() {
    return this.tiles.size;
  }
}
