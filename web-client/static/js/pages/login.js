// @ts-check
import { post } from "../api.js";
import { $, onSubmit } from "../dom.js";
import { renderNav } from "../nav.js";

renderNav(null);
const target = sitePath(new URLSearchParams(location.search).get("next"));

/// Where to go after logging in: `next` if it names a page of this site, else the account
/// page. Resolved as the browser would resolve it, so `/\\host`, `/<TAB>/host` and the like
/// (which browsers read as another host) never leave the site.
function sitePath(next) {
  if (!next || !next.startsWith("/")) return "/account";
  try {
    const url = new URL(next, location.origin);
    return url.origin === location.origin ? url.pathname + url.search + url.hash : "/account";
  } catch {
    return "/account";
  }
}

onSubmit($("#login"), $("#out"), async (form) => {
  await post("/api/login", { username: form.get("username"), password: form.get("password") });
  location.assign(target);
});
