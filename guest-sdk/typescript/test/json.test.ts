import assert from "node:assert/strict";
import { test } from "node:test";
import { json, SluiceError } from "sluice-sdk";

/** Fields as `[key, raw value]`, or the error's message. */
function fields(text: string): [string, string][] | string {
  const seen: [string, string][] = [];
  try {
    json.forEachField(text, (key, value) => seen.push([key, value]));
    return seen;
  } catch (e) {
    return (e as Error).message;
  }
}

test("fields come in order as written, keys decoded", () => {
  assert.deepEqual(fields(' { "a" : 1.50 , "b\\u0041":{"x": [1, 2]}, "a":null } '), [
    ["a", "1.50"],
    ["bA", '{"x": [1, 2]}'],
    ["a", "null"],
  ]);
  assert.deepEqual(fields("{}"), []);
  assert.deepEqual(fields('{"s": "caf\\u00e9 \\"q\\"", "n": -0.5e+3, "t": true}'), [
    ["s", '"caf\\u00e9 \\"q\\""'],
    ["n", "-0.5e+3"],
    ["t", "true"],
  ]);
});

test("errors read as serde_json's", () => {
  assert.equal(fields("[1,2]"), "value is not a JSON object: [1,2]");
  assert.equal(fields("not json"), "value is not valid JSON: expected ident at line 1 column 2");
  assert.equal(fields('{"a":1} x'), "value is not valid JSON: trailing characters at line 1 column 9");
  assert.equal(fields('{"a":}'), "value is not valid JSON: expected value at line 1 column 6");
  assert.equal(fields('{"a":1 "b":2}'), "value is not valid JSON: expected `,` or `}` at line 1 column 8");
  assert.equal(fields(""), "value is not valid JSON: EOF while parsing a value at line 1 column 0");
  assert.equal(fields('{"a":1'), "value is not valid JSON: EOF while parsing an object at line 1 column 6");
  assert.equal(fields('{"a":1,}'), "value is not valid JSON: trailing comma at line 1 column 8");
  assert.equal(fields('{"a":[1,]}'), "value is not valid JSON: expected value at line 1 column 9");
  assert.equal(fields('{"a":{"b":1,}}'), "value is not valid JSON: key must be a string at line 1 column 13");
  assert.equal(fields('{"a":1e}'), "value is not valid JSON: invalid number at line 1 column 8");
  assert.equal(fields('{"a":"\\u12"}'), "value is not valid JSON: invalid escape at line 1 column 12");
  assert.equal(fields('{"a":01}'), "value is not valid JSON: invalid number at line 1 column 7");
  assert.equal(fields('{\n"é":"\u0001"}'), "value is not valid JSON: control character (\\u0000-\\u001F) found while parsing a string at line 2 column 6");
  assert.equal(fields('{"a":"\\x"}'), "value is not valid JSON: invalid escape at line 1 column 8");
});

test("an exception of the callback stops the pass and passes as it is", () => {
  let calls = 0;
  assert.throws(
    () =>
      json.forEachField('{"a":1,"b":2,"c":3}', (key) => {
        calls++;
        if (key === "b") throw new SluiceError("no b");
      }),
    new SluiceError("no b"),
  );
  assert.equal(calls, 2);
});

test("elements come in order as written", () => {
  const seen: string[] = [];
  json.forEachElement('[ 1.0, {"a": 1}, "s" ]', (value) => seen.push(value));
  assert.deepEqual(seen, ["1.0", '{"a": 1}', '"s"']);
  assert.throws(() => json.forEachElement("{}", () => {}, "list"), new SluiceError("list is not a JSON array: {}"));
});

test("strings are escaped as serde_json does, and decoded", () => {
  assert.equal(json.writeString('q"\n\\\t\b\f\r\u0001\u001f\u007fé😀/'), '"q\\"\\n\\\\\\t\\b\\f\\r\\u0001\\u001f\u007fé😀/"');
  assert.equal(json.stringText('"a\\"b\\u00e9"'), 'a"bé');
  assert.equal(json.stringText('"plain"'), "plain");
  assert.throws(() => json.stringText("12"), SluiceError);
  assert.throws(() => json.stringText('"\\ud800"'), SluiceError);
  assert.equal(json.excerpt("x".repeat(100)).length, 80);
  assert.equal(json.excerpt("😀".repeat(100)), "😀".repeat(80));
});

test("writers place commas, undo members and keep bytes", () => {
  const object = new json.ObjectWriter();
  object.field('a"', "1");
  const beforeB = object.checkpoint();
  object.fieldAsWritten('"b\\u0041"', "2");
  object.rollback(beforeB);
  object.keep("cé", "[ 3 ]");
  const array = new json.ArrayWriter();
  const start = array.checkpoint();
  array.element("1");
  array.rollback(start);
  array.element("2");
  array.element("3");
  object.field("e", array.end());
  assert.equal(object.end(), '{"a\\"":1,"cé":[ 3 ],"e":[2,3]}');
});

test("rewriteObject replaces and drops fields, keeping the others' bytes", () => {
  const out = json.rewriteObject(
    new TextEncoder().encode('{"a": 1, "b": 2, "c": "x\\u0041", "d\\n": 1.50}'),
    (object, key, value) => {
      if (key === "a") object.field("A", "10");
      else if (key !== "b") object.keep(key, value);
    },
  );
  assert.equal(out, '{"A":10,"c":"x\\u0041","d\\n":1.50}');
  assert.throws(
    () => json.rewriteObject(new Uint8Array([0xff]), () => {}),
    new SluiceError("value is not valid JSON: invalid utf-8 sequence of 1 bytes from index 0"),
  );
});

test("parse gives serde_json's message for text that is not JSON", () => {
  assert.deepEqual(json.parse('{"a":[1]}'), { a: [1] });
  assert.throws(() => json.parse("[1,"), new SluiceError("value is not valid JSON: EOF while parsing a value at line 1 column 3"));
});
