// @ts-check
// The admin's page: roles and disabling.

import { get, post, requireLogin } from "../api.js";
import { $, actionButton, el, say, when } from "../dom.js";
import { t } from "../i18n.js";
import { renderNav } from "../nav.js";

const me = await requireLogin();
renderNav(me);
const out = $("#out");

async function act(path, body) {
  await post(path, body);
  await load();
}

async function load() {
  const accounts = await get("/api/accounts");
  const rows = $("#accounts tbody");
  rows.replaceChildren();
  for (const a of accounts) {
    const name = encodeURIComponent(a.username);
    const roles = [a.is_admin && t("admin.role_admin"), a.is_ticketmaster && t("admin.role_ticketmaster")].filter(Boolean).join(", ");
    const actions = el("td", { class: "actions" },
      actionButton(a.is_ticketmaster ? t("admin.remove_ticketmaster") : t("admin.make_ticketmaster"), "toggle-ticketmaster", out,
        () => act(`/api/accounts/${name}/ticketmaster`, { grant: !a.is_ticketmaster })),
      a.username.toLowerCase() === me.username.toLowerCase()
        ? null
        : actionButton(a.disabled ? t("admin.enable") : t("admin.disable"), "toggle-disabled", out,
          () => act(`/api/accounts/${name}/${a.disabled ? "enable" : "disable"}`)));
    rows.append(
      el("tr", { "data-username": a.username },
        el("td", {}, a.username),
        el("td", {}, roles),
        el("td", { class: a.disabled ? "status revoked" : "status active" }, a.disabled ? t("status.disabled") : t("status.active")),
        el("td", {}, when(a.created_at)),
        actions),
    );
  }
}

if (me.is_admin) {
  try {
    await load();
  } catch (e) {
    say(out, e.message);
  }
} else {
  say(out, t("admin.only_admins"));
}
