// @ts-check
// Every string the pages show, from per-language catalogues (`i18n/LANG.json` beside this
// module): the language is the one chosen with the picker (remembered in localStorage), or
// else the first of the browser's preferred languages we have, or else English.
//
// In HTML, `data-i18n="key"` sets an element's text and `data-i18n-attr="placeholder:key;
// title:key2"` its attributes; in code, `t(key, params)` and `tn(key, count, params)`
// (plurals through Intl.PluralRules) give the text. `{name}` in a text is replaced by the
// parameter `name` (numbers formatted for the language). A key the language lacks falls back
// to English and is recorded in `window.confabI18n.missing`, which the tests read.
//
// The node's error codes have keys `error.CODE`; `errorText` gives the translation, or the
// node's own English sentence for a code the catalogues do not know.

/** The languages we ship, each named in itself. */
export const LANGUAGES = Object.freeze({ en: "English", de: "Deutsch", fr: "Français", ar: "العربية" });
const RIGHT_TO_LEFT = new Set(["ar"]);
const STORAGE_KEY = "confab.language";

/** @typedef {string | Record<string, string>} Entry a text, or its plural forms by Intl.PluralRules category */

/** @returns {string} */
function chosen() {
  /** @type {string | null} */
  let stored = null;
  try {
    stored = localStorage.getItem(STORAGE_KEY);
  } catch {
    stored = null;
  }
  if (stored && stored in LANGUAGES) return stored;
  const preferred = (navigator.languages?.length ? navigator.languages : [navigator.language]).map((l) => (l ?? "").toLowerCase().split("-")[0]);
  return preferred.find((l) => l in LANGUAGES) ?? "en";
}

/** @param {string} code @returns {Promise<Record<string, Entry>>} */
async function load(code) {
  try {
    const res = await fetch(`/static/js/i18n/${code}.json`);
    if (res.ok) return await res.json();
  } catch {
    // Unreachable catalogue: English below, or the keys themselves.
  }
  return {};
}

export const lang = chosen();
const catalogue = await load(lang);
const english = lang === "en" ? catalogue : await load("en");
const numbers = new Intl.NumberFormat(lang);
const plurals = new Intl.PluralRules(lang);

/** Keys this page asked for that its language lacks. */
const missing = new Set();
/** @type {any} */ (window).confabI18n = { lang, missing };

/** @param {string} key @returns {Entry} */
function entry(key) {
  const found = catalogue[key];
  if (found !== undefined) return found;
  missing.add(key);
  return english[key] ?? key;
}

/** @param {string} text @param {Record<string, unknown>} params */
function fill(text, params) {
  return text.replace(/\{(\w+)\}/g, (whole, name) => {
    if (!(name in params)) return whole;
    const value = params[name];
    return typeof value === "number" ? numbers.format(value) : String(value);
  });
}

/**
 * The text of `key` in the page's language.
 * @param {string} key
 * @param {Record<string, unknown>} [params]
 */
export function t(key, params = {}) {
  const found = entry(key);
  return fill(typeof found === "string" ? found : (found.other ?? key), params);
}

/**
 * The text of `key` for `count` things (`{count}` in it is the number, formatted).
 * @param {string} key
 * @param {number} count
 * @param {Record<string, unknown>} [params]
 */
export function tn(key, count, params = {}) {
  const found = entry(key);
  const text = typeof found === "string" ? found : (found[plurals.select(count)] ?? found.other ?? key);
  return fill(text, { count, ...params });
}

/** A number formatted for the page's language. @param {number} n */
export function number(n) {
  return numbers.format(n);
}

/**
 * What to tell a person about the node's error `code`: our translation, or else the node's
 * own sentence (`fallback`).
 * @param {string} code
 * @param {string} fallback
 */
export function errorText(code, fallback) {
  const key = `error.${code}`;
  const found = catalogue[key] ?? english[key];
  if (typeof found === "string") return found;
  return fallback;
}

/**
 * Translates `root`'s marked elements (`data-i18n`, `data-i18n-attr`).
 * @param {ParentNode} root
 */
export function translate(root) {
  for (const node of root.querySelectorAll("[data-i18n]")) {
    const key = node.getAttribute("data-i18n");
    if (key) node.textContent = t(key);
  }
  for (const node of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of (node.getAttribute("data-i18n-attr") ?? "").split(";")) {
      const [attribute, key] = pair.split(":").map((s) => s.trim());
      if (attribute && key) node.setAttribute(attribute, t(key));
    }
  }
}

/** The language picker for the page's header: choosing reloads the page in that language. */
function picker() {
  const select = document.createElement("select");
  select.id = "language";
  select.setAttribute("aria-label", t("nav.language"));
  for (const [code, name] of Object.entries(LANGUAGES)) {
    const option = document.createElement("option");
    option.value = code;
    option.lang = code;
    option.textContent = name;
    option.selected = code === lang;
    select.append(option);
  }
  select.addEventListener("change", () => {
    try {
      localStorage.setItem(STORAGE_KEY, select.value);
    } catch {
      // Private mode: the choice holds for this page only.
    }
    location.reload();
  });
  return select;
}

document.documentElement.lang = lang;
document.documentElement.dir = RIGHT_TO_LEFT.has(lang) ? "rtl" : "ltr";
translate(document);
document.querySelector("header.bar")?.append(picker());
