/**
 * Run a transform natively in unit tests, through the same batch encoding and decoding the
 * component runs, so that tests see exactly what the runtime would.
 *
 * ```ts
 * import { init, process } from "sluice-sdk/testing";
 * const shout = init(Shout, { field: "name" });
 * assert.equal(process(shout, { value: '{"name":"ada"}' })[0]!.valueText(), '{"name":"ADA"}');
 * ```
 */
import { runBatch } from "./batch.ts";
import { Config } from "./config.ts";
import { SluiceError } from "./error.ts";
import { bytesKey, fakeTables } from "./host.ts";
import type { Transform } from "./transform.ts";
import type { InputBatch, OutputBatch, Span, WireHeader } from "./wire.ts";
import type { Bytes, HeaderInit } from "./writer.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** A record to feed a transform; everything is optional (a tombstone on topic `test`). */
export interface RecordInit {
  readonly topic?: string;
  readonly partition?: number;
  readonly offset?: number;
  readonly timestamp?: number;
  readonly key?: Bytes;
  readonly value?: Bytes;
  readonly headers?: readonly HeaderInit[];
}

/** An output as a test sees it. */
export class Output {
  constructor(
    /** The topic it is routed to; `undefined` for the pipeline's default output. */
    readonly topic: string | undefined,
    /** Its key. */
    readonly key: Uint8Array | undefined,
    /** Its value. */
    readonly value: Uint8Array | undefined,
    /** Its headers, in order: name and value (`undefined` for a null value). */
    readonly headers: readonly (readonly [string, Uint8Array | undefined])[],
    /** Its timestamp, milliseconds since the Unix epoch. */
    readonly timestamp: number | undefined,
  ) {}

  /** The value as UTF-8 text; `undefined` without a value. */
  valueText(): string | undefined {
    return this.value && decoder.decode(this.value);
  }

  /** The value parsed as JSON; throws if there is none or it is not JSON. */
  json(): unknown {
    const text = this.valueText();
    if (text === undefined) throw new Error("output has no value");
    return JSON.parse(text);
  }
}

/**
 * Builds a transform from configuration pairs (or an object of them), as the runtime's `init`
 * would.
 */
export function init<T extends Transform>(
  Class: new (config: Config) => T,
  config: readonly (readonly [string, string])[] | { readonly [key: string]: string } = [],
): T {
  return new Class(new Config(Array.isArray(config) ? config : Object.entries(config)));
}

/** Runs one record through the transform: its outputs; throws a `SluiceError` with its error. */
export function process(transform: Transform, record: RecordInit): Output[] {
  const [result] = processBatch(transform, [record]);
  if (result instanceof SluiceError) throw result;
  return result!;
}

/**
 * Runs records through the transform as one batch (with the first record's topic and
 * partition): per record, its outputs or its error.
 */
export function processBatch(
  transform: Transform,
  records: readonly RecordInit[],
): (Output[] | SluiceError)[] {
  return decode(records.length, runBatch(transform, encode(records)));
}

/**
 * Declares `table` (empty if it was not declared yet) and sets `key` to `value` in it; `null`
 * deletes the key, as a tombstone does.
 */
export function setTable(table: string, key: Bytes, value: Bytes | null): void {
  let entries = fakeTables.get(table);
  if (entries === undefined) {
    entries = new Map();
    fakeTables.set(table, entries);
  }
  const name = bytesKey(toBytes(key));
  if (value === null) entries.delete(name);
  else entries.set(name, toBytes(value));
}

/** Forgets every table. */
export function clearTables(): void {
  fakeTables.clear();
}

function toBytes(bytes: Bytes): Uint8Array {
  return typeof bytes === "string" ? encoder.encode(bytes) : bytes;
}

/** Packs `records` into one batch, as the host does. */
function encode(records: readonly RecordInit[]): InputBatch {
  const chunks: Uint8Array[] = [];
  let length = 0;
  const push = (bytes: Bytes | null | undefined): Span | undefined => {
    if (bytes === null || bytes === undefined) return undefined;
    const chunk = toBytes(bytes);
    chunks.push(chunk);
    length += chunk.length;
    return { start: length - chunk.length, len: chunk.length };
  };
  const headers: WireHeader[] = [];
  const packed = records.map((r) => {
    const firstHeader = headers.length;
    for (const [name, value] of r.headers ?? []) {
      headers.push({ name: push(name)!, value: push(value) });
    }
    return {
      offset: BigInt(r.offset ?? 0),
      timestamp: r.timestamp === undefined ? undefined : BigInt(r.timestamp),
      key: push(r.key),
      value: push(r.value),
      firstHeader,
      headerCount: headers.length - firstHeader,
    };
  });
  const data = new Uint8Array(length);
  chunks.reduce((at, chunk) => (data.set(chunk, at), at + chunk.length), 0);
  const first = records[0];
  return {
    topic: first?.topic ?? "test",
    partition: first?.partition ?? 0,
    data,
    headers,
    records: packed,
  };
}

/** Unpacks an output batch: per input, its outputs or its error. */
function decode(inputs: number, batch: OutputBatch): (Output[] | SluiceError)[] {
  const bytes = (span: Span | undefined) => span && batch.data.slice(span.start, span.start + span.len);
  const text = (span: Span | undefined) => span && decoder.decode(bytes(span));
  const results: (Output[] | SluiceError)[] = Array.from({ length: inputs }, () => []);
  for (const o of batch.records) {
    const outputs = results[o.input];
    if (!Array.isArray(outputs)) throw new Error(`output for input ${o.input}, which failed`);
    const headers = batch.headers
      .slice(o.firstHeader, o.firstHeader + o.headerCount)
      .map((h) => [text(h.name)!, bytes(h.value)] as const);
    const timestamp = o.timestamp === undefined ? undefined : Number(o.timestamp);
    outputs.push(new Output(text(o.topic), bytes(o.key), bytes(o.value), headers, timestamp));
  }
  for (const e of batch.errors) {
    results[e.input] = new SluiceError(e.message);
  }
  return results;
}
