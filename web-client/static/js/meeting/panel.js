// @ts-check
// The side panel of the call: the participant list (with raised hands as an ordered queue)
// and the chat. Everything anyone typed reaches the page only as text nodes; links in chat
// become anchors whose href is checked to be http(s) and which open with no opener.

import { el } from "../dom.js";
import { lang, t } from "../i18n.js";

/** @typedef {import("./protocol.js").ParticipantView} ParticipantView */
/** @typedef {import("./protocol.js").ChatMessage} ChatMessage */

const URL_PATTERN = /https?:\/\/[^\s<>"]+/g;

/**
 * Text with its http(s) links as anchors: an array of strings and elements for `el`.
 * @param {string} text
 * @returns {(string | HTMLElement)[]}
 */
export function linkify(text) {
  /** @type {(string | HTMLElement)[]} */
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    let url = match[0];
    // Punctuation that ends a sentence is not part of the link.
    const trailing = /[.,;:!?)\]}'’]+$/.exec(url);
    if (trailing) url = url.slice(0, -trailing[0].length);
    const start = match.index ?? 0;
    parts.push(text.slice(last, start));
    let href = null;
    try {
      const parsed = new URL(url);
      if (parsed.protocol === "http:" || parsed.protocol === "https:") href = parsed.href;
    } catch {
      href = null;
    }
    parts.push(href ? el("a", { href, target: "_blank", rel: "noopener noreferrer" }, url) : url);
    last = start + url.length;
  }
  parts.push(text.slice(last));
  return parts.filter((p) => p !== "");
}

/** Initials for an avatar: the first letters of the first and last words. */
export function initials(/** @type {string} */ name) {
  const words = name.trim().split(/\s+/).filter(Boolean);
  const first = [...(words[0] ?? "?")][0] ?? "?";
  const last = words.length > 1 ? ([...words[words.length - 1]][0] ?? "") : "";
  return (first + last).toUpperCase();
}

export class People {
  /**
   * @param {HTMLElement} list the <ul> of everyone
   * @param {HTMLElement} queue the <ol> of raised hands, in order
   * @param {{ lowerHand: (id: string) => void, remove: (id: string) => void, removeAndRevoke: (id: string) => void, mute: (id: string) => void, stopCamera: (id: string) => void, makeHost: (id: string) => void, privately: (id: string) => void }} actions
   */
  constructor(list, queue, actions) {
    this.list = list;
    this.queue = queue;
    this.actions = actions;
  }

  /**
   * @param {ParticipantView} me
   * @param {ParticipantView[]} others
   */
  render(me, others) {
    const everyone = [me, ...others.sort((a, b) => a.name.localeCompare(b.name))];
    const host = me.role === "host";
    this.list.replaceChildren(...everyone.map((p) => this.row(p, p.id === me.id, host)));
    const raised = everyone.filter((p) => p.hand != null).sort((a, b) => (a.hand ?? 0) - (b.hand ?? 0));
    this.queue.replaceChildren(
      ...raised.map((p) =>
        el(
          "li",
          { "data-participant": p.id },
          el("span", { class: "name" }, p.id === me.id ? t("people.you", { name: p.name }) : p.name),
          host || p.id === me.id
            ? el("button", { type: "button", class: "link lower-hand", onclick: () => this.actions.lowerHand(p.id) }, t("people.lower"))
            : null,
        ),
      ),
    );
    const section = this.queue.closest("section");
    if (section instanceof HTMLElement) section.dataset.hands = String(raised.length);
  }

  /**
   * @param {ParticipantView} p
   * @param {boolean} self
   * @param {boolean} host
   */
  row(p, self, host) {
    const states = [
      p.role === "host" ? el("span", { class: "badge host" }, t("role.host")) : null,
      el("span", { class: `state mic ${p.audio ? "on" : "off"}` }, p.audio ? t("people.mic_on") : t("people.muted")),
      el("span", { class: `state camera ${p.video ? "on" : "off"}` }, p.video ? t("people.camera_on") : t("people.camera_off")),
      p.hand != null ? el("span", { class: "state hand" }, t("people.hand_raised")) : null,
      p.connected === false ? el("span", { class: "state away" }, t("people.reconnecting")) : null,
    ];
    return el(
      "li",
      { "data-participant": p.id, "data-hand": p.hand != null ? String(p.hand) : null },
      el("span", { class: "avatar small", "aria-hidden": "true" }, initials(p.name)),
      el("span", { class: "name" }, self ? t("people.you", { name: p.name }) : p.name),
      ...states,
      self ? null : el("button", { type: "button", class: "link", title: t("people.message_title", { name: p.name }), onclick: () => this.actions.privately(p.id) }, t("people.message")),
      host && !self && p.audio ? el("button", { type: "button", class: "link mute", onclick: () => this.actions.mute(p.id) }, t("call.mute")) : null,
      host && !self && p.video ? el("button", { type: "button", class: "link stop-camera", onclick: () => this.actions.stopCamera(p.id) }, t("call.stop_camera")) : null,
      host && !self && p.role !== "host" ? el("button", { type: "button", class: "link make-host", onclick: () => this.actions.makeHost(p.id) }, t("people.make_host")) : null,
      host && !self ? el("button", { type: "button", class: "link remove", onclick: () => this.actions.remove(p.id) }, t("people.remove")) : null,
      host && !self && p.personal
        ? el("button", { type: "button", class: "link remove-revoke danger", onclick: () => this.actions.removeAndRevoke(p.id) }, t("people.remove_revoke"))
        : null,
    );
  }
}

export class Chat {
  /**
   * @param {HTMLElement} log the <ol> of messages
   * @param {HTMLSelectElement} to the addressee choice ("" for everyone)
   */
  constructor(log, to) {
    this.log = log;
    this.to = to;
    /** @type {Set<number>} */
    this.seen = new Set();
  }

  /**
   * Adds messages not shown yet (a history replayed in a welcome repeats ids).
   * @param {ChatMessage[]} messages
   * @param {string} me my participant id
   * @param {(id: string) => string} nameOf
   * @returns {number} how many were new
   */
  add(messages, me, nameOf) {
    let added = 0;
    for (const m of messages) {
      if (this.seen.has(m.id)) continue;
      this.seen.add(m.id);
      added += 1;
      const mine = m.from === me;
      const time = new Date(m.at).toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" });
      const privately = m.to ? (mine ? t("chat.privately_to", { name: nameOf(m.to) }) : t("chat.privately_to_you")) : null;
      this.log.append(
        el(
          "li",
          { class: `chat-message${mine ? " mine" : ""}${m.to ? " private" : ""}`, "data-from": m.from },
          el("span", { class: "meta" }, el("strong", { class: "name" }, mine ? t("chat.you") : m.name), privately ? ` ${privately}` : "", " ", el("time", { datetime: new Date(m.at).toISOString() }, time)),
          el("p", { class: "text", dir: "auto" }, ...linkify(m.text)),
        ),
      );
    }
    this.log.scrollTop = this.log.scrollHeight;
    return added;
  }

  /**
   * The addressee choices: everyone, or one of the others.
   * @param {ParticipantView[]} others
   */
  addressees(others) {
    const current = this.to.value;
    this.to.replaceChildren(
      el("option", { value: "" }, t("chat.everyone")),
      ...others.map((p) => el("option", { value: p.id, selected: p.id === current }, p.name)),
    );
    if (!others.some((p) => p.id === current)) this.to.value = "";
  }
}
