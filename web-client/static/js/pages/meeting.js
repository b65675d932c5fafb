// /m/ROOM#<invite>: check the invite with the node, then the prejoin screen.

import { post } from "../api.js";
import { $ } from "../dom.js";

const room = decodeURIComponent(location.pathname.split("/")[2] ?? "");
const invite = decodeURIComponent(location.hash.slice(1));
const NAME_KEY = "confab.display-name";

function refuse(reason, help) {
  $("#checking").hidden = true;
  $("#refusal-reason").textContent = reason;
  $("#refusal-help").textContent = help ?? "";
  $("#refusal").hidden = false;
  document.title = "Invite not valid · Confab";
}

async function preview() {
  const status = $("#media-status");
  const video = $("#preview");
  let stream = null;
  const update = async () => {
    const wantCamera = $("#camera-on").checked;
    const wantMic = $("#mic-on").checked;
    stream?.getTracks().forEach((t) => t.stop());
    stream = null;
    video.srcObject = null;
    if (!wantCamera && !wantMic) {
      status.textContent = "You will join with camera and microphone off.";
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: wantCamera, audio: wantMic });
      video.srcObject = stream;
      status.textContent = "";
    } catch (e) {
      status.textContent = `Camera or microphone unavailable (${e.name}). You can still join without them.`;
    }
  };
  $("#camera-on").addEventListener("change", update);
  $("#mic-on").addEventListener("change", update);
  await update();
}

async function main() {
  if (!invite) {
    refuse(
      "This link has no invite in it.",
      "An invite link ends with # followed by a long code (cfi1.…). Ask the person who invited you for the full link.",
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
  $("#meeting-title").textContent = `Meeting ${granted.room}`;
  $("#meeting-invited").textContent = `Invited by ${granted.issuer} as ${granted.role}.`;
  document.title = `${granted.room} · Confab`;
  const nameInput = $("#display-name");
  nameInput.value = localStorage.getItem(NAME_KEY) ?? "";
  nameInput.addEventListener("change", () => localStorage.setItem(NAME_KEY, nameInput.value.trim()));
  $("#prejoin").hidden = false;
  await preview();
}

// Pasting another invite into the address bar changes only the fragment, which does not
// reload the page: check the new invite from scratch.
window.addEventListener("hashchange", () => location.reload());

main();
