// @ts-check
// The meeting's own log: the console, plus the last lines kept in `window.confabLog` so that
// a person (or a test) can read what happened without the developer tools.

const KEEP = 300;
window.confabLog = [];

export function log(level, message, detail) {
  const line = `${new Date().toISOString().slice(11, 23)} ${level} ${message}${detail === undefined ? "" : ` ${detail}`}`;
  window.confabLog.push(line);
  if (window.confabLog.length > KEEP) window.confabLog.shift();
  (level === "warn" ? console.warn : console.info)(`confab: ${message}`, detail ?? "");
}
