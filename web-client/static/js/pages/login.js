import { post } from "../api.js";
import { $, onSubmit } from "../dom.js";
import { renderNav } from "../nav.js";

renderNav(null);
const next = new URLSearchParams(location.search).get("next");
// Only ever go back to a page of this site.
const target = next && next.startsWith("/") && !next.startsWith("//") ? next : "/account";

onSubmit($("#login"), $("#out"), async (form) => {
  await post("/api/login", { username: form.get("username"), password: form.get("password") });
  location.assign(target);
});
