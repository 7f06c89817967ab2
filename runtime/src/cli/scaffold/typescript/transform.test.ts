// Native unit tests: `npm test`. They run the transform through the same batch code as the
// component, without building WebAssembly.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as testing from "sluice-sdk/testing";
import {{TYPE}} from "../src/{{MODULE}}.ts";

test("renames in place and adds fields", () => {
  const t = testing.init({{TYPE}}, { rename: "msg:message", add: "source:web" });
  const out = testing.process(t, { value: '{"id":1,"msg":"hi","n":2}' });
  assert.equal(out[0]?.valueText(), '{"id":1,"message":"hi","n":2,"source":"web"}');

  assert.throws(() => testing.process(t, { value: "[1]" }), /expected a JSON object/);
  assert.throws(() => testing.init({{TYPE}}, { rename: "oops" }));
});
