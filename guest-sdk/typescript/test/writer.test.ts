import assert from "node:assert/strict";
import { test } from "node:test";
import { Config, SluiceError, SluiceRecord, Transform, Writer } from "sluice-sdk";
import { init, Output, process, processBatch } from "sluice-sdk/testing";

const text = (bytes: Uint8Array | undefined) => bytes && new TextDecoder().decode(bytes);

/** Exercises every writer path: plain, routed, JSON, explicit record, filter and error. */
class Router implements Transform {
  constructor(config: Config) {
    config.allowOnly([]);
  }

  process(record: SluiceRecord, out: Writer): void {
    switch (record.valueText()) {
      case "drop":
        return;
      case "fail":
        out.write("partial output, discarded on error");
        throw new SluiceError("failed on purpose");
      case "bug":
        out.write("partial output, discarded on error");
        (undefined as unknown as { x: number }).x;
        return;
      case "route":
        return out.writeTo("other", "routed");
      case "json":
        return out.writeJson({ offset: record.offset, trace: text(record.header("trace")) });
      case "twice":
        out.write("one");
        return out.write(new TextEncoder().encode("two"));
      case "custom":
        return out.writeRecord({
          value: null,
          key: "k2",
          timestamp: null,
          keepInputHeaders: false,
          headers: [["h", "v"], ["null", null]],
        });
      case "nullkey":
        return out.writeRecord({ value: "v", key: null, topic: "other" });
      default:
        return out.write(record.valueText());
    }
  }
}

test("every writer path round-trips through the batch encoding", () => {
  const t = init(Router);
  const base = {
    topic: "in",
    partition: 2,
    offset: 7,
    timestamp: 1_000,
    key: "key",
    headers: [["trace", "abc"], ["null", null]] as const,
  };
  const values = ["plain", "drop", "fail", "route", "json", "twice", "custom", "nullkey", "bug"];
  const results = processBatch(
    t,
    values.map((value) => ({ ...base, value })),
  );
  const outputs = (i: number) => results[i] as Output[];

  const [plain] = outputs(0);
  assert.equal(plain!.valueText(), "plain");
  assert.equal(text(plain!.key), "key");
  assert.equal(plain!.timestamp, 1_000);
  assert.equal(plain!.topic, undefined);
  assert.deepEqual(
    plain!.headers.map(([name, value]) => [name, text(value)]),
    [["trace", "abc"], ["null", undefined]],
  );
  assert.deepEqual(results[1], []);
  assert.deepEqual(results[2], new SluiceError("failed on purpose"));
  assert.equal(outputs(3)[0]!.topic, "other");
  assert.deepEqual(outputs(4)[0]!.json(), { offset: 7, trace: "abc" });
  assert.deepEqual(outputs(5).map((o) => o.valueText()), ["one", "two"]);

  const [custom] = outputs(6);
  assert.equal(custom!.value, undefined);
  assert.equal(text(custom!.key), "k2");
  assert.equal(custom!.timestamp, undefined);
  assert.deepEqual(
    custom!.headers.map(([name, value]) => [name, text(value)]),
    [["h", "v"], ["null", undefined]],
  );

  const [nullKey] = outputs(7);
  assert.equal(nullKey!.key, undefined);
  assert.equal(nullKey!.timestamp, 1_000);
  assert.equal(nullKey!.headers.length, 2);

  const bug = results[8] as SluiceError;
  assert.match(bug.message, /^TypeError: /);
});

test("bad values are per-record errors, and configs are checked", () => {
  const t = init(Router);
  assert.throws(() => process(t, {}), new SluiceError("record has no value"));
  assert.throws(
    () => process(t, { value: new Uint8Array([0x61, 0xff, 0xfe]) }),
    new SluiceError("value is not UTF-8: invalid utf-8 sequence of 1 bytes from index 1"),
  );
  assert.throws(() => init(Router, [["x", "1"]]), new SluiceError("unknown config key `x`; known keys: "));
});

test("config lookups and errors name the key, as in Rust", () => {
  const c = new Config([
    ["unit", "ms"],
    ["n", "x"],
    ["flag", "yes"],
  ]);
  assert.equal(c.get("unit"), "ms");
  assert.equal(c.get("nope"), undefined);
  assert.throws(() => c.require("field"), new SluiceError("config key `field` is required"));
  assert.throws(
    () => c.int("n"),
    new SluiceError("config key `n`: invalid value `x`: invalid digit found in string"),
  );
  assert.throws(
    () => c.bool("flag"),
    new SluiceError("config key `flag`: invalid value `yes`: provided string was not `true` or `false`"),
  );
  assert.throws(() => c.number("n"), new SluiceError("config key `n`: invalid value `x`: invalid float literal"));
  assert.equal(c.int("absent"), undefined);
  assert.equal(new Config([["n", "-12"]]).int("n"), -12);
  assert.equal(new Config([["n", "1.5e3"]]).number("n"), 1500);
  assert.equal(new Config([["b", "false"]]).bool("b"), false);
  assert.equal(c.choice("unit", ["ms", "s"]), "ms");
  assert.throws(
    () => c.choice("unit", ["s", "us"]),
    new SluiceError("config key `unit`: invalid value `ms`, expected one of: s, us"),
  );
  assert.throws(
    () => c.allowOnly(["unit"]),
    new SluiceError("unknown config key `n`; known keys: unit"),
  );
  c.allowOnly(["unit", "n", "flag"]);
  assert.deepEqual([...c.entries()].map(([k]) => k), ["unit", "n", "flag"]);
});

test("the last value of a repeated key wins", () => {
  assert.equal(new Config([["k", "1"], ["k", "2"]]).get("k"), "2");
});
