// @ts-check
// The ticketmaster's page.

import { get, post, requireLogin } from "../api.js";
import { $, actionButton, copyButton, el, onSubmit, say, when } from "../dom.js";
import { t } from "../i18n.js";
import { renderNav } from "../nav.js";

const me = await requireLogin();
renderNav(me);
const out = $("#out");
if (!me.is_ticketmaster) say(out, t("tokens.only_ticketmasters"));

async function load() {
  const tokens = await get("/api/tokens");
  const body = $("#tokens tbody");
  body.replaceChildren();
  for (const token of tokens) {
    const revoke = actionButton(t("common.revoke"), "revoke", out, async () => {
      await post(`/api/tokens/${token.id}/revoke`);
      await load();
    });
    body.append(
      el("tr", { "data-id": token.id },
        el("td", {}, `#${token.id}`),
        el("td", { class: `status ${token.status}` }, t(`status.${token.status}`)),
        el("td", {}, token.note),
        el("td", {}, token.used_by ?? ""),
        el("td", {}, when(token.status_at ?? token.expires_at)),
        el("td", {}, token.issued_by ?? t("tokens.server")),
        el("td", {}, token.status === "unused" ? revoke : "")),
    );
  }
}

onSubmit($("#issue"), out, async (form) => {
  const issued = await post("/api/tokens", { note: form.get("note"), expires: form.get("expires") });
  $("#new-token").value = issued.token;
  $("#signup-link").textContent = `${location.origin}/create#${issued.token}`;
  $("#issued").hidden = false;
  $("#note").value = "";
  await load();
});
$("#copy-token").addEventListener("click", (e) => copyButton(e.target, $("#new-token").value));

if (me.is_ticketmaster) {
  try {
    await load();
  } catch (e) {
    say(out, e.message);
  }
}
