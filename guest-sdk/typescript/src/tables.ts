/**
 * Lookups in the pipeline's lookup tables: the latest value per key of a Kafka topic. A
 * transform reads only the tables its pipeline declares. Natively (in tests) lookups read the
 * tables filled with `setTable` of `sluice-sdk/testing`.
 */
import { SluiceError } from "./error.ts";
import { host } from "./host.ts";
import { parse } from "./json.ts";
import { decodeUtf8 } from "./utf8.ts";

const encoder = new TextEncoder();

/**
 * The latest value of `key` (bytes, or text as UTF-8) in `table`, or `undefined` when the key
 * is absent or was deleted. Throws a `SluiceError` when the pipeline declares no such table.
 */
export function lookup(table: string, key: Uint8Array | string): Uint8Array | undefined {
  const bytes = typeof key === "string" ? encoder.encode(key) : key;
  try {
    return host.lookup(table, bytes);
  } catch (e) {
    // The component's import throws the host's message as the error's `payload`.
    const payload = (e as { payload?: unknown }).payload;
    throw new SluiceError(typeof payload === "string" ? payload : (e as Error).message);
  }
}

/** Like `lookup`, with the value parsed as JSON; a value that is not JSON throws. */
export function lookupJson(table: string, key: Uint8Array | string): unknown {
  const value = lookup(table, key);
  if (value === undefined) {
    return undefined;
  }
  const keyText = typeof key === "string" ? key : new TextDecoder("utf-8", { ignoreBOM: true }).decode(key);
  const subject = `table \`${table}\`: the value of key \`${keyText}\``;
  return parse(decodeUtf8(value, (why) => `${subject} is not valid JSON: ${why}`), subject);
}
