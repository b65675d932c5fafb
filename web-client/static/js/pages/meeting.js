// @ts-check
// /m/ROOM#<invite>: check the invite with the node, then the prejoin (name, devices, preview
// and level meter), then the meeting.

import { post } from "../api.js";
import { $, el, say, decodeLenient } from "../dom.js";
import { Call } from "../meeting/call.js";
import { Levels, LocalMedia } from "../meeting/media.js";
import { bestPath, describe, selfTest } from "../meeting/selftest.js";
import { Tiles } from "../meeting/tiles.js";
import { Chat, People, initials } from "../meeting/panel.js";
import { MAX_CHAT_CHARS } from "../meeting/protocol.js";
import { lang, t, tn } from "../i18n.js";

const room = decodeLenient(location.pathname.split("/")[2] ?? "");
const invite = decodeLenient(location.hash.slice(1));
const NAME_KEY = "confab.display-name";
/** What people see of the meeting: its owner's title, or the room name. */
let title = room;
/** @type {string[]} in a cluster, the other nodes to connect through if this one refuses us */
let otherNodes = [];

const local = new LocalMedia();
const levels = new Levels();

function refuse(reason, help) {
  $("#checking").hidden = true;
  $("#refusal-reason").textContent = reason;
  $("#refusal-help").textContent = help ?? "";
  $("#refusal").hidden = false;
  document.title = t("refusal.title");
}

function describeError(e) {
  if (!e) return "";
  if (e.name === "NotAllowedError") return t("device.not_allowed");
  if (e.name === "NotFoundError" || e.name === "OverconstrainedError") return t("device.not_found");
  if (e.name === "NotReadableError") return t("device.in_use");
  return `${e.name}.`;
}

async function fillDeviceChoices() {
  const devices = await local.devices();
  for (const kind of ["audio", "video"]) {
    const select = kind === "audio" ? $("#mic-select") : $("#camera-select");
    const current = local.track(kind)?.getSettings().deviceId ?? local.deviceIds[kind];
    select.replaceChildren(
      ...devices[kind].map((d, i) => el("option", { value: d.deviceId, selected: d.deviceId === current }, d.label || t(kind === "audio" ? "device.microphone_n" : "device.camera_n", { n: i + 1 }))),
    );
    select.disabled = devices[kind].length < 2;
  }
}

async function prejoin() {
  const status = $("#media-status");
  const meter = $("#mic-level");
  const video = $("#preview");
  const show = () => {
    video.srcObject = local.videoOn ? local.stream : null;
    levels.watch("preview", local.stream, (level) => (meter.style.width = `${Math.round(level * 100)}%`));
    if (!local.audioOn) meter.style.width = "0";
    const problems = [];
    if (local.wanted.video && !local.tracks.video) problems.push(t("prejoin.camera_unavailable", { why: describeError(local.lastError) }));
    if (local.wanted.audio && !local.tracks.audio) problems.push(t("prejoin.mic_unavailable", { why: describeError(local.lastError) }));
    status.textContent = problems.length
      ? `${problems.join(" ")} ${t("prejoin.join_anyway")}`
      : !local.wanted.audio && !local.wanted.video
        ? t("prejoin.join_off")
        : "";
  };
  $("#camera-on").addEventListener("change", async (e) => {
    await local.setVideo(e.target.checked);
    show();
  });
  $("#mic-on").addEventListener("change", async (e) => {
    await local.setAudio(e.target.checked);
    show();
  });
  $("#camera-select").addEventListener("change", async (e) => {
    await local.choose("video", e.target.value);
    show();
  });
  $("#mic-select").addEventListener("change", async (e) => {
    await local.choose("audio", e.target.value);
    show();
  });
  await local.open("video");
  await local.open("audio");
  show();
  await fillDeviceChoices();
  navigator.mediaDevices?.addEventListener?.("devicechange", fillDeviceChoices);
}

/// Before the meeting opens (guests), the invite page says when, counts down, and enables
/// Join at the time. `now` is the node's clock, so that a wrong clock here does not matter.
function countDown(opensAt, now) {
  if (!opensAt || opensAt <= now) return;
  const skew = now * 1000 - Date.now();
  const out = $("#opens-at");
  const join = $("#join");
  const at = new Date(opensAt * 1000 - skew).toLocaleString(lang, { dateStyle: "medium", timeStyle: "short" });
  const tick = () => {
    const left = Math.ceil((opensAt * 1000 - (Date.now() + skew)) / 1000);
    if (left <= 0) {
      clearInterval(timer);
      out.hidden = true;
      join.dataset.closed = "";
      join.disabled = false;
      return;
    }
    join.dataset.closed = "yes";
    join.disabled = true;
    const minutes = Math.ceil(left / 60);
    out.textContent = minutes > 90 ? t("prejoin.opens_at", { at }) : tn("prejoin.opens_in", minutes, { at });
    out.hidden = false;
  };
  const timer = setInterval(tick, 1000);
  tick();
}

/// The prejoin self-test, shown under the device choices; joining does not wait for it.
async function checkNetwork(iceServers) {
  const out = $("#network-status");
  let found = null;
  try {
    found = await selfTest(iceServers);
  } catch (e) {
    out.textContent = t("network.failed", { why: e.name });
    out.dataset.failed = "yes";
  }
  if (found) out.textContent = describe(found);
  else if (!out.dataset.failed) out.hidden = true;
  out.dataset.path = bestPath(found);
  // For the console and for tests.
  window.confabSelfTest = found;
}

/// Keeps the screen on during the call (Wake Lock API, where the browser has it): the lock
/// goes when the page is hidden, so it is taken again each time the page shows, until the
/// call ends. `window.confabWakeLock` says how it went, for the console and tests.
function keepAwake(call) {
  const state = /** @type {any} */ (window);
  /** @type {any} */
  let lock = null;
  const take = async () => {
    if (!("wakeLock" in navigator)) {
      state.confabWakeLock = "unsupported";
      return;
    }
    if (document.visibilityState !== "visible" || lock || call.signaling.ended) return;
    try {
      lock = await /** @type {any} */ (navigator).wakeLock.request("screen");
      state.confabWakeLock = "held";
      lock.addEventListener("release", () => {
        lock = null;
        state.confabWakeLock = "released";
      });
    } catch (e) {
      state.confabWakeLock = `refused: ${e.name}`;
    }
  };
  take();
  document.addEventListener("visibilitychange", take);
  return () => {
    document.removeEventListener("visibilitychange", take);
    lock?.release();
  };
}

function startCall(name) {
  levels.unwatch("preview");
  $("#prejoin").hidden = true;
  $("#call").hidden = false;
  document.body.classList.add("in-call");
  $("#call-title").textContent = title;
  const connection = $("#connection-status");
  const chat = new Chat($("#chat-log"), $("#chat-to"));
  let unread = 0;
  const showUnread = () => {
    const badge = $("#chat-unread");
    badge.textContent = String(unread);
    badge.hidden = unread === 0;
    $("#toggle-chat").setAttribute("aria-label", unread ? tn("call.chat_unread", unread) : t("call.chat"));
  };
  /** Shows one panel ("people", "chat" or "devices"); with `toggle`, hides the panel if that one is showing. */
  const openPanel = (which, toggle = false) => {
    const show = !(toggle && !$(`#${which}-panel`).hidden);
    for (const name of ["people", "chat", "devices"]) {
      $(`#${name}-panel`).hidden = !(show && name === which);
      $(`#toggle-${name}`).setAttribute("aria-pressed", String(show && name === which));
    }
    $("#panel").hidden = !show;
    if (show && which === "chat") {
      unread = 0;
      showUnread();
    }
    if (show && which === "devices") fillCallDevices();
  };
  /** The device choices in the call, with the ones in use selected. */
  const fillCallDevices = async () => {
    const devices = await local.devices();
    const fill = (select, list, current, label) => {
      select.replaceChildren(...list.map((d, i) => el("option", { value: d.deviceId, selected: d.deviceId === current }, d.label || t(label, { n: i + 1 }))));
      select.disabled = list.length < 2;
    };
    fill($("#call-camera"), devices.video, local.track("video")?.getSettings().deviceId ?? local.deviceIds.video, "device.camera_n");
    fill($("#call-mic"), devices.audio, local.track("audio")?.getSettings().deviceId ?? local.deviceIds.audio, "device.microphone_n");
    const canChooseOutput = "setSinkId" in HTMLMediaElement.prototype;
    $("#call-speaker-label").hidden = !canChooseOutput || devices.output.length === 0;
    if (canChooseOutput) fill($("#call-speaker"), devices.output, call.tiles.sinkId ?? "default", "device.speaker_n");
  };
  navigator.mediaDevices?.addEventListener?.("devicechange", () => {
    if (!$("#devices-panel").hidden) fillCallDevices();
  });
  /** @type {Call} */
  let call;
  let releaseWakeLock = () => {};
  const people = new People($("#people"), $("#hand-queue"), {
    lowerHand: (id) => call.lowerHand(id),
    remove: (id) => call.confirmRemove(id),
    removeAndRevoke: (id) => call.confirmRemoveAndRevoke(id),
    mute: (id) => call.mute(id),
    stopCamera: (id) => call.mute(id, "video"),
    makeHost: (id) => call.makeHost(id),
    privately: (id) => {
      openPanel("chat");
      $("#chat-to").value = id;
      $("#chat-text").focus();
    },
  });
  call = new Call({
    room,
    invite,
    name,
    nodes: otherNodes,
    local,
    levels,
    tiles: new Tiles($("#tiles"), { detail: (id) => call.detail(id) }),
    onCount: (n) => ($("#participant-count").textContent = n === 1 ? t("call.only_you") : tn("call.count", n)),
    onConnection: (state) => {
      if (state === "reconnecting") say(connection, t("call.reconnecting"), "info");
      else say(connection, "");
    },
    onEnd: (reason) => {
      releaseWakeLock();
      document.body.classList.remove("in-call");
      $("#call").hidden = true;
      $("#lobby").hidden = true;
      $("#ended-title").textContent = reason ? t("ended.no_longer") : t("ended.left");
      $("#ended-reason").textContent = reason ?? "";
      $("#rejoin").href = location.href;
      $("#ended").hidden = false;
    },
    onPeople: (me, others) => {
      people.render(me, others);
      chat.addressees(others);
      $("#lower-all").hidden = me.role !== "host";
      $("#host-tools").hidden = me.role !== "host";
      renderWaiting(me.role === "host" ? call.waiting : []);
      const lock = $("#toggle-lock");
      lock.textContent = call.locked ? t("host.unlock") : t("host.lock");
      lock.setAttribute("aria-pressed", String(call.locked));
      // Sharing restricted to hosts: guests have no share button (a share in progress ends).
      const mayShare = call.share !== "hosts" || me.role === "host";
      screenButton.hidden = !mayShare;
      if (!mayShare && local.screen) call.setScreen(false).catch(() => {});
      const raised = me.hand != null;
      const handButton = $("#toggle-hand");
      handButton.textContent = raised ? t("call.lower_hand") : t("call.raise_hand");
      handButton.setAttribute("aria-pressed", String(raised));
    },
    onChat: (messages) => {
      const added = chat.add(messages, call.me?.id ?? "", (id) => call.nameOf(id));
      if ($("#chat-panel").hidden) {
        unread += added;
        showUnread();
      }
    },
    onNotice: (text) => {
      say(connection, text, "info");
      setTimeout(() => say(connection, ""), 6000);
    },
    onLobby: (hostPresent) => {
      const waiting = hostPresent !== null;
      $("#lobby").hidden = !waiting;
      $("#call").hidden = waiting;
      if (waiting) {
        $("#lobby-status").textContent = hostPresent
          ? t("lobby.host_present")
          : t("lobby.no_host");
      }
    },
    onRefused: (error) => {
      if (error.code.startsWith("chat_") || error.code === "rate_limited" || error.code === "no_such_participant") say($("#chat-error"), error.message);
    },
  });
  call.tiles.onMore(() => openPanel("people"));
  call.onAnnounce = (text) => {
    // A fresh node each time, so that the same words twice are announced twice.
    $("#announcer").replaceChildren(el("p", {}, text));
  };
  /** Hosts: who waits in the lobby, each with Admit and Turn away. */
  const renderWaiting = (/** @type {{ id: string, name: string }[]} */ guests) => {
    $("#lobby-guests").hidden = guests.length === 0;
    $("#waiting-list").replaceChildren(
      ...guests.map((g) =>
        el(
          "li",
          { "data-waiting": g.id },
          el("span", { class: "avatar small", "aria-hidden": "true" }, initials(g.name)),
          el("span", { class: "name" }, g.name),
          el("button", { type: "button", class: "link admit", onclick: () => call.admit(g.id) }, t("host.admit")),
          el("button", { type: "button", class: "link deny danger", onclick: () => call.deny(g.id) }, t("host.deny")),
        ),
      ),
    );
  };
  $("#admit-all").addEventListener("click", () => call.admit("all"));
  $("#lobby-leave").addEventListener("click", () => call.leave());
  const deviceChange = (kind) => async (event) => {
    say($("#devices-error"), "");
    try {
      if (kind === "output") await call.tiles.setSink(event.target.value);
      else await call.setDevice(kind, event.target.value);
    } catch (e) {
      say($("#devices-error"), t("device.failed", { why: e.name ?? e }));
    }
    showButtons();
  };
  $("#call-camera").addEventListener("change", deviceChange("video"));
  $("#call-mic").addEventListener("change", deviceChange("audio"));
  $("#call-speaker").addEventListener("change", deviceChange("output"));
  $("#toggle-devices").addEventListener("click", () => openPanel("devices", true));
  $("#toggle-chat").addEventListener("click", () => openPanel("chat", true));
  $("#toggle-people").addEventListener("click", () => openPanel("people", true));
  $("#toggle-hand").addEventListener("click", () => call.setHand(call.me?.hand == null));
  const screenButton = $("#toggle-screen");
  const showScreenButton = () => {
    const on = !!local.screen;
    screenButton.textContent = on ? t("call.stop_sharing") : t("call.share");
    screenButton.setAttribute("aria-pressed", String(on));
  };
  if (!navigator.mediaDevices?.getDisplayMedia) {
    screenButton.disabled = true;
    screenButton.title = t("call.cannot_share");
  }
  screenButton.addEventListener("click", async () => {
    screenButton.disabled = true;
    try {
      await call.setScreen(!local.screen);
    } catch (e) {
      say(connection, e.message, "error");
      setTimeout(() => say(connection, ""), 6000);
    } finally {
      screenButton.disabled = false;
      showScreenButton();
    }
  });
  call.onScreenChange = showScreenButton;
  $("#lower-all").addEventListener("click", () => call.lowerHand("all"));
  $("#mute-all").addEventListener("click", () => call.mute("all"));
  $("#toggle-lock").addEventListener("click", () => call.setLocked(!call.locked));
  $("#end-all").addEventListener("click", () => {
    if (confirm(t("host.end_confirm"))) call.endForAll();
  });
  const chatText = $("#chat-text");
  chatText.maxLength = MAX_CHAT_CHARS;
  $("#chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = chatText.value;
    if (!text.trim()) return;
    say($("#chat-error"), "");
    if (call.sendChat(text, $("#chat-to").value || null)) chatText.value = "";
    else say($("#chat-error"), t("chat.not_connected"));
  });
  chatText.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("#chat-form").requestSubmit();
    }
  });
  const micButton = $("#toggle-mic");
  const cameraButton = $("#toggle-camera");
  const showButtons = () => {
    micButton.textContent = local.audioOn ? t("call.mute") : t("call.unmute");
    micButton.setAttribute("aria-pressed", String(!local.audioOn));
    cameraButton.textContent = local.videoOn ? t("call.stop_camera") : t("call.start_camera");
    cameraButton.setAttribute("aria-pressed", String(!local.videoOn));
  };
  call.onLocalChange = showButtons;
  const toggle = (button, action) => button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await action();
    } finally {
      button.disabled = false;
      showButtons();
    }
  });
  toggle(micButton, () => call.setAudio(!local.audioOn));
  toggle(cameraButton, () => call.setVideo(!local.videoOn));
  showButtons();
  // A phone's front and back cameras (or any two): the flip moves to the next one.
  const flipButton = $("#flip-camera");
  const showFlip = async () => {
    flipButton.hidden = (await local.devices()).video.length < 2;
  };
  showFlip();
  navigator.mediaDevices?.addEventListener?.("devicechange", showFlip);
  toggle(flipButton, async () => {
    const cameras = (await local.devices()).video;
    if (cameras.length < 2) return;
    const current = local.track("video")?.getSettings().deviceId ?? local.deviceIds.video;
    const next = cameras[(cameras.findIndex((d) => d.deviceId === current) + 1) % cameras.length];
    await call.setDevice("video", next.deviceId);
  });
  releaseWakeLock = keepAwake(call);
  const speakerView = $("#speaker-view");
  speakerView.addEventListener("click", () => {
    const on = $("#tiles").classList.toggle("speaker-view");
    speakerView.setAttribute("aria-pressed", String(on));
    speakerView.textContent = on ? t("call.grid_view") : t("call.speaker_view");
  });
  // Low-bandwidth mode: sound, and video from whoever speaks only. The call suggests it by
  // itself when our downlink looks too thin (the relay paused video for it, or most of what
  // reaches us has been poor for a while).
  const lowBandwidth = $("#low-bandwidth");
  const hint = $("#bandwidth-hint");
  const setLowBandwidth = (on) => {
    call.setLowBandwidth(on);
    lowBandwidth.setAttribute("aria-pressed", String(on));
    hint.hidden = true;
  };
  lowBandwidth.addEventListener("click", () => setLowBandwidth(!call.lowBandwidth));
  $("#bandwidth-hint-on").addEventListener("click", () => setLowBandwidth(true));
  $("#bandwidth-hint-close").addEventListener("click", () => {
    hint.hidden = true;
  });
  call.onThinDownlink = () => {
    hint.hidden = false;
  };
  $("#leave").addEventListener("click", () => call.leave());
  // Shortcuts: single keys, never while typing in a field or with a modifier held.
  const shortcuts = { m: "#toggle-mic", v: "#toggle-camera", s: "#toggle-screen", h: "#toggle-hand", c: "#toggle-chat", p: "#toggle-people" };
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing || $("#call").hidden) return;
    const target = event.target;
    if (target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
    if (event.key === "?") {
      event.preventDefault();
      $("#shortcuts").showModal();
      return;
    }
    const button = shortcuts[event.key.toLowerCase()];
    if (!button || event.repeat) return;
    event.preventDefault();
    $(button).click();
  });
  window.addEventListener("pagehide", () => call.leave());
  $("#rejoin").addEventListener("click", (e) => {
    e.preventDefault();
    location.reload();
  });
  // For the console and for tests: the call's state and figures.
  window.confabCall = call;
}

async function main() {
  if (!invite) {
    refuse(
      t("refusal.no_invite"),
      t("refusal.no_invite_help"),
    );
    return;
  }
  let granted;
  try {
    granted = await post("/api/invites/check", { room, invite });
  } catch (e) {
    refuse(e.message);
    return;
  }
  $("#checking").hidden = true;
  title = granted.title ?? granted.room;
  otherNodes = Array.isArray(granted.nodes) ? granted.nodes : [];
  $("#meeting-title").textContent = t("prejoin.meeting", { room: title });
  $("#meeting-invited").textContent = t(granted.role === "host" ? "prejoin.invited_host" : "prejoin.invited_guest", { issuer: granted.issuer });
  document.title = `${title} · Confab`;
  const nameInput = $("#display-name");
  nameInput.value = localStorage.getItem(NAME_KEY) ?? "";
  $("#prejoin").hidden = false;
  // The camera and microphone may wait on a permission prompt: joining waits for the
  // answer, but the form is usable meanwhile.
  const mediaReady = prejoin();
  checkNetwork(granted.ice_servers);
  if (granted.role !== "host") countDown(granted.opens_at, granted.now);
  $("#join-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = nameInput.value.trim();
    if (!name) {
      say($("#join-error"), t("prejoin.name_needed"));
      return;
    }
    localStorage.setItem(NAME_KEY, name);
    $("#join").disabled = true;
    say($("#join-error"), "");
    await mediaReady;
    startCall(name);
  });
  if ($("#join").dataset.closed !== "yes") $("#join").disabled = false;
}

// Pasting another invite into the address bar changes only the fragment, which does not
// reload the page: check the new invite from scratch.
window.addEventListener("hashchange", () => location.reload());

main();
