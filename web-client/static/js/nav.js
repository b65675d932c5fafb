// @ts-check
// The header's links, which depend on who is logged in.

import { post } from "./api.js";
import { $, el } from "./dom.js";
import { t } from "./i18n.js";
import { forgetKeys } from "./keystore.js";

export function renderNav(me) {
  const nav = $("#nav");
  if (!nav) return;
  nav.replaceChildren();
  if (!me) {
    nav.append(el("a", { href: "/login" }, t("nav.log_in")));
    return;
  }
  nav.append(el("a", { href: "/account" }, t("nav.meetings")));
  if (me.is_ticketmaster) nav.append(el("a", { href: "/tokens" }, t("nav.tokens")));
  if (me.is_admin) nav.append(el("a", { href: "/admin" }, t("nav.accounts")));
  nav.append(el("span", { class: "who" }, me.username));
  nav.append(
    el("button", { type: "button", id: "logout", class: "link", onclick: async () => {
      await post("/api/logout");
      await forgetKeys();
      location.assign("/");
    } }, t("nav.log_out")),
  );
}
