// @ts-check
import { get } from "../api.js";
import { $, say } from "../dom.js";
import { renderNav } from "../nav.js";

try {
  const me = await get("/api/me");
  renderNav(me);
  say($("#whoami"), `You are logged in as ${me.username}.`, "info");
} catch {
  renderNav(null);
}
