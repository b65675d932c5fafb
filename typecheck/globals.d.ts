// What the web client puts on `window` for the console and the browser tests.
interface Window {
  confabLog: unknown[];
  confabSelfTest: unknown;
  confabCall: unknown;
}
