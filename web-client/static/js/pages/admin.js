// The admin's page: roles and disabling.

import { get, post, requireLogin } from "../api.js";
import { $, el, say, when } from "../dom.js";
import { renderNav } from "../nav.js";

const me = await requireLogin();
renderNav(me);
const out = $("#out");

async function act(path, body) {
  try {
    await post(path, body);
    await load();
  } catch (e) {
    say(out, e.message);
  }
}

async function load() {
  const accounts = await get("/api/accounts");
  const rows = $("#accounts tbody");
  rows.replaceChildren();
  for (const a of accounts) {
    const name = encodeURIComponent(a.username);
    const roles = [a.is_admin && "admin", a.is_ticketmaster && "ticketmaster"].filter(Boolean).join(", ");
    const actions = el("td", { class: "actions" },
      el("button", { type: "button", class: "toggle-ticketmaster", onclick: () => act(`/api/accounts/${name}/ticketmaster`, { grant: !a.is_ticketmaster }) },
        a.is_ticketmaster ? "Remove ticketmaster" : "Make ticketmaster"),
      a.username.toLowerCase() === me.username.toLowerCase()
        ? null
        : el("button", { type: "button", class: "toggle-disabled", onclick: () => act(`/api/accounts/${name}/${a.disabled ? "enable" : "disable"}`) },
          a.disabled ? "Enable" : "Disable"));
    rows.append(
      el("tr", { "data-username": a.username },
        el("td", {}, a.username),
        el("td", {}, roles),
        el("td", { class: a.disabled ? "status revoked" : "status active" }, a.disabled ? "disabled" : "active"),
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
  say(out, "Only admins can manage accounts.");
}
