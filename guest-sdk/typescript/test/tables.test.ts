import assert from "node:assert/strict";
import { test } from "node:test";
import { SluiceError, tables } from "sluice-sdk";
import { clearTables, setTable } from "sluice-sdk/testing";

test("fake tables behave like the host's", () => {
  setTable("customers", "1", '{"name":"ada"}');
  assert.deepEqual(tables.lookup("customers", "1"), new TextEncoder().encode('{"name":"ada"}'));
  assert.deepEqual(tables.lookupJson("customers", new TextEncoder().encode("1")), { name: "ada" });
  assert.equal(tables.lookup("customers", "2"), undefined);
  setTable("customers", "bad", "{");
  assert.throws(
    () => tables.lookupJson("customers", "bad"),
    new SluiceError(
      "table `customers`: the value of key `bad` is not valid JSON: EOF while parsing an object at line 1 column 1",
    ),
  );
  setTable("customers", "1", null);
  assert.equal(tables.lookup("customers", "1"), undefined);
  assert.throws(
    () => tables.lookup("orders", "1"),
    new SluiceError("this pipeline declares no table named `orders`"),
  );
  clearTables();
  assert.throws(() => tables.lookup("customers", "1"), SluiceError);
});
