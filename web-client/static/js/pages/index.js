// @ts-check
import { get } from "../api.js";
import { $, say } from "../dom.js";
import { t } from "../i18n.js";
import { renderNav } from "../nav.js";

try {
  const me = await get("/api/me");
  renderNav(me);
  say($("#whoami"), t("home.logged_in_as", { name: me.username }), "info");
} catch {
  renderNav(null);
}
