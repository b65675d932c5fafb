// @ts-check
// The signaling protocol (docs/signaling.md), as the web client speaks it: every message the
// client sends is built here, and every close code it acts on is named here. The rest of the
// client never writes a message by hand.

export const PROTOCOL_VERSION = 1;

/// Close codes (docs/signaling.md).
export const CLOSE = Object.freeze({
  LEFT: 1000,
  POLICY: 1008,
  STALLED: 1011,
  /// In a cluster: the meeting moved, or this node lost the node that runs it; reconnect.
  MOVED: 1012,
  TRY_AGAIN: 1013,
  REMOVED: 4001,
  REPLACED: 4002,
  REFUSED: 4003,
  ENDED: 4004,
  DENIED: 4005,
});

/// Longest chat message the node accepts, in characters.
export const MAX_CHAT_CHARS = 2000;

/**
 * @typedef {{ id: string, name: string, role: "host" | "guest", audio: boolean, video: boolean,
 *   connected: boolean, hand: number | null, screen?: boolean, personal?: boolean }} ParticipantView
 * @typedef {{ type: "chat", id: number, from: string, name: string, text: string, at: number,
 *   to?: string }} ChatMessage
 * @typedef {{ urls: string[], username?: string, credential?: string }} IceServer
 * @typedef {{ id: string, name: string }} WaitingView a guest waiting in the lobby
 * @typedef {{ participant: string, secret: string }} Resume
 * @typedef {{ type: "offer" | "answer", sdp: string }} Description
 */

/**
 * @param {string} invite
 * @param {string} name
 * @param {boolean} audio
 * @param {boolean} video
 * @param {Resume | null} [resume]
 */
export function join(invite, name, audio, video, resume = null) {
  return { type: "join", v: PROTOCOL_VERSION, invite, name, audio, video, ...(resume ? { resume } : {}) };
}

/**
 * A description or a candidate for one other participant.
 * @param {string} to
 * @param {{ description?: Description | null, candidate?: RTCIceCandidateInit | null }} payload
 */
export function signal(to, payload) {
  const { description, candidate } = payload;
  return description ? { type: "signal", to, description } : { type: "signal", to, candidate };
}

/** @param {boolean} audio @param {boolean} video @param {boolean} [screen] */
export function media(audio, video, screen = false) {
  return { type: "media", audio, video, screen };
}

/** @param {string} text @param {string | null} [to] a participant id for a private message */
export function chat(text, to = null) {
  return to ? { type: "chat", text, to } : { type: "chat", text };
}

/** @param {boolean} raised */
export function hand(raised) {
  return { type: "hand", raised };
}

/** @param {string} participant an id, or "all" */
export function lowerHand(participant) {
  return { type: "lower-hand", participant };
}

/**
 * Hosts: remove someone; with `revoke`, also revoke the invite they came with (only one
 * made for them alone: `personal`).
 * @param {string} participant
 * @param {boolean} [revoke]
 */
export function remove(participant, revoke = false) {
  return revoke ? { type: "remove", participant, revoke } : { type: "remove", participant };
}

export function leave() {
  return { type: "leave" };
}

export function ping() {
  return { type: "ping" };
}

/** @param {string} participant */
export function meshFailed(participant) {
  return { type: "mesh-failed", participant };
}

/** @param {string} sdp */
export function sfuOffer(sdp) {
  return { type: "sfu-offer", sdp };
}

/**
 * Hosts: ask one participant (an id) or everyone else ("all") to mute, or to stop their camera.
 * @param {string} participant
 * @param {"audio" | "video"} [kind]
 */
export function mute(participant, kind = "audio") {
  return kind === "audio" ? { type: "mute", participant } : { type: "mute", participant, kind };
}

/** Hosts: lock the meeting (only hosts get new seats) or unlock it. @param {boolean} locked */
export function lock(locked) {
  return { type: "lock", locked };
}

/** Hosts: make another participant a host for this meeting. @param {string} participant */
export function makeHost(participant) {
  return { type: "make-host", participant };
}

/** Hosts: let a guest waiting in the lobby (an id) or all of them ("all") in. @param {string} participant */
export function admit(participant) {
  return { type: "admit", participant };
}

/** Hosts: turn a guest waiting in the lobby away. @param {string} participant */
export function deny(participant) {
  return { type: "deny", participant };
}

/** Hosts: end the meeting for everyone. */
export function end() {
  return { type: "end" };
}

/** @param {{ participant: string, screen?: boolean, height: number }[]} tiles */
export function sfuView(tiles) {
  return { type: "sfu-view", tiles };
}
