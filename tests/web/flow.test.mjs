// Unit tests of the web client's pure logic, with Node's own runner (`node --test tests/web/`,
// which tests/run.sh runs): no browser, no dependency.
import assert from "node:assert/strict";
import test from "node:test";

import { Flow, STALL_MS } from "../../web-client/static/js/meeting/flow.js";

test("media that keeps arriving is no stall, however long", () => {
  const flow = new Flow();
  for (let now = 0; now < 10_000; now += 100) assert.equal(flow.update(1_000 + now, now), false);
  assert.equal(flow.stalled, false);
});

test("nothing ever received is no stall: there is nothing to miss", () => {
  const flow = new Flow();
  for (let now = 0; now < 5_000; now += 100) assert.equal(flow.update(0, now), false);
});

test("silence on every connection is a stall once, after STALL_MS, until media flows again", () => {
  const flow = new Flow();
  flow.update(500, 0);
  assert.equal(flow.update(500, STALL_MS - 1), false, "not yet");
  assert.equal(flow.update(500, STALL_MS), true, "the stall begins");
  assert.equal(flow.update(500, STALL_MS + 100), false, "told once");
  assert.equal(flow.stalled, true);
  assert.equal(flow.update(900, STALL_MS + 200), false, "flowing again");
  assert.equal(flow.stalled, false);
  assert.equal(flow.update(900, 2 * STALL_MS + 200), true, "a second stall is told again");
});

test("a new connection whose figures start lower counts as flow", () => {
  const flow = new Flow();
  flow.update(90_000, 0);
  assert.equal(flow.update(90_000, STALL_MS), true);
  assert.equal(flow.update(1_000, STALL_MS + 100), false);
  assert.equal(flow.stalled, false);
});
