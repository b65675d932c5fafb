// @ts-check
// The node's JSON API. Every call goes through `api`, which turns an error answer into an
// ApiError carrying a sentence for a person: ours for the node's error code, in the page's
// language, or else the node's own.

import { errorText, t } from "./i18n.js";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(method, path, body) {
  /** @type {RequestInit & { headers: Record<string, string> }} */
  const init = { method, credentials: "same-origin", headers: {} };
  if (method !== "GET") {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body ?? {});
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, "network", t("error.network"));
  }
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch {
    // Not JSON: fall through to a generic message.
  }
  if (!res.ok) {
    const code = data?.error ?? `http_${res.status}`;
    throw new ApiError(res.status, code, errorText(code, data?.message ?? t("error.http", { status: res.status })));
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);

/// The logged-in account, or a redirect to the login page (the promise then never settles).
export async function requireLogin() {
  try {
    return await get("/api/me");
  } catch (e) {
    if (e.status === 401) {
      location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
      return new Promise(() => {});
    }
    throw e;
  }
}
