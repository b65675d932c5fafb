// @ts-check
// Building the page. Text from anyone (names, notes, messages) only ever becomes a text
// node: `el` appends strings as text, and nothing here uses innerHTML.

import { lang, t } from "./i18n.js";

/// `decodeURIComponent`, except that a damaged escape (a lone `%`) gives the text back as it
/// is rather than throwing: a mangled link is then refused with a reason, not a stuck page.
export function decodeLenient(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else if (value !== false && value != null) node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export const $ = (selector) => document.querySelector(selector);

/// Shows `text` in the message area `target` (an element with role=status or alert).
export function say(target, text, kind = "error") {
  target.textContent = text;
  target.className = `message ${kind}`;
  target.hidden = !text;
}

/// A Unix time in the reader's own time zone, to the minute.
export function when(unix) {
  if (unix == null) return "";
  return new Date(unix * 1000).toLocaleString(lang, { dateStyle: "medium", timeStyle: "short" });
}

/// Runs an async form handler with the submit button disabled and errors shown in `out`.
export function onSubmit(form, out, handler) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    say(out, "");
    try {
      await handler(new FormData(form));
    } catch (e) {
      say(out, e.message);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  });
}

/// A button that runs `action` (disabled meanwhile) and shows its error, if any, in `out`.
export function actionButton(label, className, out, action) {
  return el("button", { type: "button", class: className, onclick: async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    say(out, "");
    try {
      await action();
    } catch (e) {
      say(out, e.message);
    } finally {
      button.disabled = false;
    }
  } }, label);
}

/// Copies text and says so on the button.
export async function copyButton(button, text) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = t("common.copied");
  } catch {
    button.textContent = t("common.select_and_copy");
  }
  setTimeout(() => (button.textContent = t("common.copy")), 2000);
}
