// @ts-check
// The signaling connection (docs/signaling.md): a WebSocket to /ws/ROOM that joins with the
// invite and, when it drops, reconnects with the same invite and the seat's resume secret so
// that the node keeps our seat. Media between browsers does not pass through here, so a drop
// does not interrupt the call. In a cluster the node names the other nodes (`nodes`): when
// ours cannot be reached, the next reconnection goes through another.

import { log } from "./log.js";
import * as protocol from "./protocol.js";
import { errorText, t } from "../i18n.js";

const HEARTBEAT_MS = 10_000;
const SILENCE_MS = 25_000;
const MAX_BACKOFF_MS = 5_000;
/// How long a probe (`probe`) waits for the node before taking the connection for dead.
const PROBE_MS = 500;

// Close codes after which reconnecting would not help (the node said why before closing).
const { CLOSE } = protocol;
const FINAL_CLOSES = new Set([CLOSE.LEFT, CLOSE.REMOVED, CLOSE.REPLACED, CLOSE.REFUSED, CLOSE.POLICY, CLOSE.ENDED, CLOSE.DENIED]);
/** Refusals after which another node of the cluster may take us. */
const ELSEWHERE = new Set(["node_full", "node_draining"]);
/** What the page says after a final close the node gave no message for. */
const CLOSE_REASONS = new Map([
  [CLOSE.REPLACED, "ended.replaced"],
  [CLOSE.ENDED, "ended.ended"],
  [CLOSE.DENIED, "ended.turned_away"],
]);

export class Signaling {
  /// `join(resume)` builds the join message (`protocol.join`) with the seat to resume, if
  /// any. `handlers`: onWelcome(msg, resumed),
  /// onMessage(msg), onState("connected" | "reconnecting"), onEnd(reason). `nodes`: in a
  /// cluster, the other nodes' URLs the invite check named (more come with `nodes`).
  constructor(room, join, handlers, nodes = []) {
    this.path = `/ws/${encodeURIComponent(room)}`;
    /// The page's own node first, then the others the node named.
    /** @type {string[]} */
    this.origins = [`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`];
    this.originIndex = 0;
    this.url = this.origins[0] + this.path;
    this.join = join;
    this.handlers = handlers;
    this.resume = null;
    this.socket = null;
    this.ended = false;
    this.welcomed = false;
    /// Whether the current socket ever opened (one that never did means its node is down).
    this.opened = false;
    this.backoff = 250;
    /// The next reconnection goes at once (a probe found the connection dead).
    this.immediate = false;
    this.probing = false;
    this.lastHeard = 0;
    this.lastError = null;
    /// How many times a seat was granted on this page: 1, plus one per reconnection.
    this.welcomes = 0;
    this.timer = setInterval(() => this.heartbeat(), HEARTBEAT_MS);
    this.learnNodes(nodes);
    this.open();
  }

  open() {
    this.url = this.origins[this.originIndex] + this.path;
    const socket = new WebSocket(this.url);
    this.socket = socket;
    this.welcomed = false;
    this.opened = false;
    this.lastError = null;
    socket.onopen = () => {
      this.opened = true;
      this.lastHeard = Date.now();
      socket.send(JSON.stringify(this.join(this.resume)));
    };
    socket.onmessage = (event) => {
      if (socket !== this.socket) return;
      this.lastHeard = Date.now();
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        log("warn", "the node sent something that is not JSON", event.data);
        return;
      }
      this.receive(message);
    };
    socket.onclose = (event) => {
      if (socket !== this.socket) return;
      this.closed(event.code);
    };
  }

  receive(message) {
    if (message.type === "welcome") {
      const resumed = this.resume !== null && message.resumed;
      this.resume = { participant: message.you.id, secret: message.resume_secret };
      this.welcomed = true;
      this.welcomes += 1;
      this.backoff = 250;
      this.handlers.onState("connected");
      this.handlers.onWelcome(message, resumed);
    } else if (message.type === "error") {
      // Our sentence for the code, in the page's language (the node's is English).
      message.message = errorText(message.code, message.message);
      this.lastError = message;
      if (!this.welcomed) return; // The close that follows ends things with this reason.
      log("warn", `the node refused a message: ${message.code}: ${message.message}`);
      this.handlers.onMessage(message);
    } else if (message.type === "nodes") {
      this.learnNodes(message.urls);
    } else if (message.type !== "pong") {
      this.handlers.onMessage(message);
    }
  }

  /// Adds the other nodes' `wss://` origins to those the page knows (none is ever dropped:
  /// a node that is down is skipped when a connection to it fails).
  learnNodes(urls) {
    if (!Array.isArray(urls)) return;
    for (const url of urls) {
      if (typeof url !== "string" || !/^https:\/\/[^/?#\s]+$/.test(url)) continue;
      const origin = "wss://" + url.slice("https://".length);
      if (!this.origins.includes(origin)) this.origins.push(origin);
    }
  }

  closed(code) {
    if (this.ended) return;
    // A node that could not be reached at all, or that takes nobody now (full, or being
    // drained): the next attempt goes through another one.
    const elsewhere = code === CLOSE.TRY_AGAIN && !this.welcomed && ELSEWHERE.has(this.lastError?.code ?? "");
    if ((!this.opened || elsewhere) && this.origins.length > 1) {
      this.originIndex = (this.originIndex + 1) % this.origins.length;
      log("info", `signaling: trying ${this.origins[this.originIndex]}`);
    }
    if (FINAL_CLOSES.has(code) || (code !== CLOSE.TRY_AGAIN && !this.welcomed && this.lastError && this.resume === null)) {
      const why = t(CLOSE_REASONS.get(code) ?? "ended.closed");
      this.end(this.lastError?.message ?? why);
      return;
    }
    this.handlers.onState("reconnecting");
    const wait = this.immediate ? 0 : this.backoff;
    if (!this.immediate) this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    this.immediate = false;
    setTimeout(() => this.ended || this.open(), wait);
  }

  /// Asks the node for a pong now. If nothing at all comes back within `PROBE_MS`, the
  /// connection is taken for dead (our address changed, say: TCP would take minutes to
  /// say so) and replaced at once, resuming our seat.
  probe() {
    const socket = this.socket;
    if (this.probing || this.ended || socket?.readyState !== WebSocket.OPEN || !this.welcomed) return;
    const asked = Date.now();
    this.probing = true;
    socket.send(JSON.stringify(protocol.ping()));
    setTimeout(() => {
      this.probing = false;
      if (this.socket !== socket || this.lastHeard >= asked) return;
      log("warn", `signaling: no answer within ${PROBE_MS} ms: connecting again`);
      this.immediate = true;
      this.dropConnection();
    }, PROBE_MS);
  }

  heartbeat() {
    if (this.socket?.readyState !== WebSocket.OPEN) return;
    if (Date.now() - this.lastHeard > SILENCE_MS) {
      this.dropConnection();
      return;
    }
    this.send(protocol.ping());
  }

  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN && this.welcomed) {
      this.socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  /// Closes the socket as a network failure would; the reconnection logic takes over.
  dropConnection() {
    const socket = this.socket;
    this.socket = null;
    socket?.close();
    this.closed(1006);
  }

  /// Leaves the meeting for good.
  leave() {
    if (this.ended) return;
    this.send(protocol.leave());
    this.end(null);
  }

  end(reason) {
    this.ended = true;
    clearInterval(this.timer);
    const socket = this.socket;
    this.socket = null;
    socket?.close();
    this.handlers.onEnd(reason);
  }
}
