// @ts-check
// The account holder's page: meetings, invite links signed in this browser, revocation.

import { get, post, requireLogin } from "../api.js";
import { signInvite } from "../capability.js";
import { $, actionButton, copyButton, el, onSubmit, say, when } from "../dom.js";
import { t } from "../i18n.js";
import { signingIdentity, supported } from "../keystore.js";
import { renderNav } from "../nav.js";

const me = await requireLogin();
renderNav(me);
const out = $("#out");

/**
 * Signs an invite in this browser and registers it; `forWhom` names the one person it is for.
 * @param {string} room
 * @param {"guest" | "host"} role
 * @param {string | null} [forWhom]
 */
async function makeInvite(room, role, forWhom = null) {
  if (!supported()) throw new Error(t("account.no_keys"));
  const identity = await signingIdentity(me);
  const days = Number($("#invite-expiry").value);
  const now = Math.floor(Date.now() / 1000);
  const certExpires = Number(identity.expiresAt);
  const expires = Math.min(now + days * 86400, certExpires);
  const invite = await signInvite(identity.keyPair.privateKey, identity.certificate, {
    room,
    role,
    notBefore: now,
    expires,
  });
  const registered = await post("/api/invites", forWhom ? { invite, for: forWhom } : { invite });
  $("#invite-what").textContent = forWhom
    ? t("account.personal_link_for", { room, name: forWhom, until: when(registered.expires_at) })
    : t(role === "host" ? "account.host_link_for" : "account.guest_link_for", { room, until: when(registered.expires_at) });
  $("#invite-link").value = registered.link;
  $("#invite-result").hidden = false;
  $("#invite-link").select();
  await loadInvites();
}

$("#copy-link").addEventListener("click", (e) => copyButton(e.target, $("#invite-link").value));

async function loadMeetings() {
  const meetings = await get("/api/meetings");
  const list = $("#meetings");
  list.replaceChildren();
  if (meetings.length === 0) list.append(el("li", { class: "hint" }, t("account.no_meetings")));
  for (const m of meetings) {
    list.append(
      el("li", { class: "meeting", "data-room": m.room },
        el("strong", { class: "title" }, m.title),
        m.title !== m.room ? el("span", { class: "hint" }, ` (${m.room})`) : null,
        el("span", { class: "hint" }, ` ${t("account.created", { when: when(m.created_at) })}`),
        el("span", { class: "actions" },
          actionButton(t("account.guest_link"), "guest-invite", out, () => makeInvite(m.room, "guest")),
          actionButton(t("account.host_link"), "host-invite", out, () => makeInvite(m.room, "host")),
          actionButton(t("account.personal_link"), "personal-invite", out, async () => {
            const forWhom = prompt(t("account.personal_prompt"));
            if (forWhom?.trim()) await makeInvite(m.room, "guest", forWhom.trim());
          }),
          actionButton(t("account.rename"), "rename", out, async () => {
            const title = prompt(t("account.rename_prompt"), m.title);
            if (title === null) return;
            await post(`/api/meetings/${encodeURIComponent(m.room)}/rename`, { title });
            await loadMeetings();
          }),
          actionButton(t("account.delete"), "delete danger", out, async () => {
            if (!confirm(t("account.delete_confirm", { title: m.title }))) return;
            await post(`/api/meetings/${encodeURIComponent(m.room)}/delete`);
            await Promise.all([loadMeetings(), loadInvites()]);
          })),
        settings(m)),
    );
  }
}

/**
 * A meeting's settings, each saved as soon as it changes (a meeting in progress follows).
 * @param {{ room: string, lobby: boolean, share: string, muted_above: number, opens_at: number }} m
 */
function settings(m) {
  /**
   * Saves `field` whenever it changes (`change` gives the settings to send); a refusal puts
   * back the last value saved.
   * @param {HTMLInputElement | HTMLSelectElement} field
   * @param {() => object} change
   */
  const saveOn = (field, change) => {
    const value = () => (field instanceof HTMLInputElement && field.type === "checkbox" ? field.checked : field.value);
    let saved = value();
    field.addEventListener("change", async () => {
      field.disabled = true;
      say(out, "");
      try {
        await post(`/api/meetings/${encodeURIComponent(m.room)}/settings`, change());
        saved = value();
      } catch (e) {
        if (typeof saved === "boolean" && field instanceof HTMLInputElement) field.checked = saved;
        else field.value = String(saved);
        say(out, e.message);
      } finally {
        field.disabled = false;
      }
    });
  };
  const lobby = /** @type {HTMLInputElement} */ (el("input", { type: "checkbox", class: "lobby", checked: m.lobby }));
  saveOn(lobby, () => ({ lobby: lobby.checked }));
  const share = /** @type {HTMLSelectElement} */ (
    el(
      "select",
      { class: "share" },
      el("option", { value: "everyone", selected: m.share !== "hosts" }, t("account.share_everyone")),
      el("option", { value: "hosts", selected: m.share === "hosts" }, t("account.share_hosts")),
    )
  );
  saveOn(share, () => ({ share: share.value }));
  const opens = /** @type {HTMLInputElement} */ (el("input", { type: "datetime-local", class: "opens-at", value: m.opens_at ? localTime(m.opens_at) : "" }));
  saveOn(opens, () => ({ opens_at: opens.value ? Math.floor(new Date(opens.value).getTime() / 1000) : 0 }));
  const muted = /** @type {HTMLInputElement} */ (el("input", { type: "number", class: "muted-above", min: "0", max: "10000", value: String(m.muted_above ?? 0) }));
  saveOn(muted, () => ({ muted_above: Number(muted.value || 0) }));
  return el(
    "div",
    { class: "settings" },
    el("label", { class: "check setting" }, lobby, ` ${t("account.lobby_setting")}`),
    el("label", { class: "setting" }, `${t("account.share_setting")} `, share),
    el("label", { class: "setting" }, `${t("account.muted_setting")} `, muted, el("span", { class: "hint" }, ` ${t("account.muted_hint")}`)),
    el("label", { class: "setting" }, `${t("account.opens_setting")} `, opens, el("span", { class: "hint" }, ` ${t("account.opens_hint")}`)),
  );
}

/// A Unix time as a datetime-local input's value, in this browser's time zone.
function localTime(/** @type {number} */ unix) {
  const d = new Date(unix * 1000);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

async function loadInvites() {
  const invites = await get("/api/invites");
  const body = $("#invites tbody");
  body.replaceChildren();
  for (const i of invites) {
    const revoke = actionButton(t("common.revoke"), "revoke", out, async () => {
      await post(`/api/invites/${i.id}/revoke`);
      await loadInvites();
    });
    body.append(
      el("tr", { "data-id": i.id },
        el("td", {}, i.room),
        el("td", {}, i.for ? t("account.role_for", { role: t(`role.${i.role}`), name: i.for }) : t(`role.${i.role}`)),
        el("td", {}, when(i.expires_at)),
        el("td", { class: `status ${i.status}` }, t(`status.${i.status}`)),
        el("td", { class: "actions" },
          i.status === "active" && i.link ? el("button", { type: "button", class: "copy-link", onclick: (/** @type {Event} */ e) => copyButton(e.target, i.link) }, t("account.copy_link")) : null,
          i.status === "active" ? revoke : null)),
    );
  }
}

onSubmit($("#new-meeting"), out, async (form) => {
  const meeting = await post("/api/meetings", { room: form.get("room") });
  $("#room").value = "";
  await loadMeetings();
  await makeInvite(meeting.room, "guest");
});

try {
  await Promise.all([loadMeetings(), loadInvites()]);
} catch (e) {
  say(out, e.message);
}
