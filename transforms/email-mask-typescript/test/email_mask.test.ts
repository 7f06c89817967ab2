import assert from "node:assert/strict";
import { test } from "node:test";
import { SluiceError } from "sluice-sdk";
import { init, process } from "sluice-sdk/testing";
import EmailMask, { maskEmails } from "../src/email_mask.ts";

/** The output value for `value`, or the record's error message. */
function run(value: string): string {
  try {
    return process(init(EmailMask), { value })[0]!.valueText()!;
  } catch (e) {
    if (e instanceof SluiceError) return e.message;
    throw e;
  }
}

test("addresses are masked in nested strings, other bytes kept", () => {
  assert.equal(
    run('{ "id" : 1.50, "to": ["a@b.io", {"cc": "mail c.d+e@f-g.co.uk now"}], "n": null }'),
    '{"id":1.50,"to":["[EMAIL]",{"cc":"mail [EMAIL] now"}],"n":null}',
  );
  assert.equal(run('"x@y.com"'), '"[EMAIL]"');
  assert.equal(run("17"), "17");
});

test("strings without an address keep their escapes; rewritten ones are escaped as serde_json", () => {
  assert.equal(run('{"a":"\\u00e9\\/","k\\u0041":"\\u00e9 x@y.com\\t"}'), '{"a":"\\u00e9\\/","kA":"é [EMAIL]\\t"}');
});

test("the pii-stripper's checks refuse file names, long parts and glued words", () => {
  assert.equal(maskEmails("logo@2x.png and icon@3x.SVG"), undefined);
  assert.equal(maskEmails(`${"a".repeat(65)}@example.com then ok@example.com`), `${"a".repeat(65)}@example.com then [EMAIL]`);
  assert.equal(maskEmails("a@b.com_x"), undefined);
  assert.equal(maskEmails("real@2x.pngs"), "[EMAIL]");
  assert.equal(maskEmails("no address"), undefined);
});

test("tombstones pass, bad values fail", () => {
  const [tombstone] = process(init(EmailMask), { key: "k" });
  assert.equal(tombstone!.value, undefined);
  assert.equal(new TextDecoder().decode(tombstone!.key), "k");
  assert.equal(run('{"a":'), "value is not valid JSON: EOF while parsing a value at line 1 column 5");
  assert.equal(run("[".repeat(129) + "]".repeat(129)), "value is nested deeper than 128 levels");
  assert.equal(run("[".repeat(128) + "]".repeat(128)), "[".repeat(128) + "]".repeat(128));
});

test("it takes no configuration", () => {
  assert.throws(() => init(EmailMask, { phone: "false" }), /unknown config key `phone`/);
});
