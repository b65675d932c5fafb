// @ts-check
import { post } from "../api.js";
import { $, onSubmit, decodeLenient } from "../dom.js";
import { renderNav } from "../nav.js";

renderNav(null);
// A ticketmaster may send /create#cft_…: the token rides in the fragment, which never
// reaches a server log.
const fromLink = decodeLenient(location.hash.slice(1));
if (fromLink.startsWith("cft_")) $("#token").value = fromLink;

onSubmit($("#signup"), $("#out"), async (form) => {
  await post("/api/signup", {
    username: form.get("username"),
    password: form.get("password"),
    token: form.get("token"),
  });
  location.assign("/account");
});
