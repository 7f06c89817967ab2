import assert from "node:assert/strict";
import { test } from "node:test";
import { SluiceError } from "sluice-sdk";
import { init, process } from "sluice-sdk/testing";
import TzNormaliser from "../src/tz_normaliser.ts";

/** The output value for `value`, or the record's error message. */
function run(config: Record<string, string>, value: string): string {
  try {
    const outputs = process(init(TzNormaliser, config), { value });
    assert.equal(outputs.length, 1);
    return outputs[0]!.valueText()!;
  } catch (e) {
    if (e instanceof SluiceError) return e.message;
    throw e;
  }
}

/** The rendering of `text` alone. */
const date = (config: Record<string, string>, text: string) =>
  run(config, JSON.stringify({ date: text })).replace(/^\{"timestamp":(.*)\}$/, "$1");

test("seed lines become epoch millis in place of date", () => {
  assert.equal(
    run({}, '{"date": "2024-02-05 10:01:52.884548 -0500", "message": "0"}'),
    '{"timestamp":1707145312884.548,"message":"0"}',
  );
});

test("other fields keep their order and exact bytes", () => {
  assert.equal(
    run({}, '{"a": 1.50, "date": "2024-02-05 10:01:52.0 +0000", "b": {"x": [1, 2]}, "c\\u0041": "\\u00e9"}'),
    '{"a":1.50,"timestamp":1707127312000,"b":{"x": [1, 2]},"cA":"\\u00e9"}',
  );
});

test("units, rfc3339 and negative epochs are exact", () => {
  const text = "2024-02-05 10:01:52.884548 -0500";
  assert.equal(date({ unit: "s" }, text), "1707145312.884548");
  assert.equal(date({ unit: "us" }, text), "1707145312884548");
  assert.equal(date({ output: "rfc3339" }, text), '"2024-02-05T15:01:52.884548Z"');
  assert.equal(date({ unit: "s" }, "1970-01-01 00:00:00.000000001 +0000"), "0.000000001");
  assert.equal(date({ unit: "s" }, "1969-12-31 23:59:59.999999999 +0000"), "-0.000000001");
  assert.equal(date({}, "1969-12-31 23:59:59.9 +0000"), "-100");
  assert.equal(date({ output: "rfc3339" }, "0001-01-01 00:00:00.0 +0100"), '"0000-12-31T23:00:00Z"');
  assert.equal(date({ output: "rfc3339" }, "9999-12-31 23:59:59.999999999 -2359"), '"+10000-01-01T23:58:59.999999999Z"');
  assert.equal(date({ output: "rfc3339" }, "2016-12-31 23:59:60.5 +0000"), '"2016-12-31T23:59:60.500Z"');
  assert.equal(date({}, "2016-12-31 23:59:60.5 +0000"), "1483228800500");
});

test("chrono's leniencies are kept", () => {
  for (const text of [
    "2024-02-05 10:01:52.884548 -05:00",
    " 2024-02-05  10:01:52.884548-0500",
    "2024-02-05 10:01:52.884548 \u22120500",
    "2024-02-05 10:01:52.8845480000 -0500",
  ]) {
    assert.equal(date({}, text), "1707145312884.548", text);
  }
  assert.equal(date({}, "+2024-2-5 1:01:52 -0500"), "1707112912000");
});

test("bad records are errors naming the field and the value", () => {
  const cannot = (text: string, why: string) =>
    `field \`date\`: cannot parse \`${text}\` with format \`%Y-%m-%d %H:%M:%S.%f %z\`: ${why}`;
  assert.equal(date({}, "2023-02-29 10:00:00.1 +0000"), cannot("2023-02-29 10:00:00.1 +0000", "input is out of range"));
  assert.equal(date({}, "2024-02-05 24:00:00.0 +0000"), cannot("2024-02-05 24:00:00.0 +0000", "input is out of range"));
  assert.equal(date({}, "2024-02-05 10:01:52.88 +0160"), cannot("2024-02-05 10:01:52.88 +0160", "input is out of range"));
  assert.equal(date({}, "2024-02-05 10:01:52.88 +05"), cannot("2024-02-05 10:01:52.88 +05", "premature end of input"));
  assert.equal(date({}, "2024-02-05 10:01:52.88 -0500 "), cannot("2024-02-05 10:01:52.88 -0500 ", "trailing input"));
  assert.equal(date({}, "yesterday"), cannot("yesterday", "input contains invalid characters"));
  assert.equal(run({}, '{"message": 1}'), "field `date` is missing");
  assert.equal(run({}, '{"date": 17}'), "field `date` is not a string: 17");
  assert.equal(run({}, "[1]"), "value is not a JSON object: [1]");
  assert.equal(run({}, '{"date": }'), "value is not valid JSON: expected value at line 1 column 10");
});

test("the output field replaces a field of that name; the first date is used", () => {
  assert.equal(
    run({}, '{"timestamp": 5, "date": "1970-01-01 00:00:01.0 +0000", "x": 1, "date": "y"}'),
    '{"timestamp":1000,"x":1,"date":"y"}',
  );
  assert.equal(
    run({ field: "when", output_field: "when" }, '{"when": "1970-01-01 00:00:01.0 +0000"}'),
    '{"when":1000}',
  );
});

test("bad config is refused by key", () => {
  const refused = (config: Record<string, string>) => () => init(TzNormaliser, config);
  assert.throws(refused({ feild: "x" }), /^SluiceError: unknown config key `feild`/);
  assert.throws(refused({ unit: "h" }), new SluiceError("config key `unit`: invalid value `h`, expected one of: ms, s, us"));
  assert.throws(refused({ field: "" }), new SluiceError("config key `field` must not be empty"));
  assert.throws(refused({ format: "%Y" }), /config key `format`: only the default/);
  assert.throws(refused({ timezone: "Europe/Paris" }), /config key `timezone`: only `UTC`/);
  init(TzNormaliser, { format: "%Y-%m-%d %H:%M:%S.%f %z", timezone: "UTC" });
});
