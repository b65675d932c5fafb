// @ts-check
// The ticketmaster's page.

import { get, post, requireLogin } from "../api.js";
import { $, actionButton, copyButton, el, onSubmit, say, when } from "../dom.js";
import { renderNav } from "../nav.js";

const me = await requireLogin();
renderNav(me);
const out = $("#out");
if (!me.is_ticketmaster) say(out, "Only ticketmasters can issue sign-up tokens. An admin can grant you the role.");

async function load() {
  const tokens = await get("/api/tokens");
  const body = $("#tokens tbody");
  body.replaceChildren();
  for (const t of tokens) {
    const revoke = actionButton("Revoke", "revoke", out, async () => {
      await post(`/api/tokens/${t.id}/revoke`);
      await load();
    });
    body.append(
      el("tr", { "data-id": t.id },
        el("td", {}, `#${t.id}`),
        el("td", { class: `status ${t.status}` }, t.status),
        el("td", {}, t.note),
        el("td", {}, t.used_by ?? ""),
        el("td", {}, when(t.status_at ?? t.expires_at)),
        el("td", {}, t.issued_by ?? "server"),
        el("td", {}, t.status === "unused" ? revoke : "")),
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
