import { SluiceError } from "./error.ts";
import type { Span, WireHeader, WireOutputRecord } from "./wire.ts";
import type { SluiceRecord } from "./record.ts";

/** Bytes, or text written as UTF-8. */
export type Bytes = Uint8Array | string;

/** A header to write: its name and value (`null` for a null value). */
export type HeaderInit = readonly [name: string, value: Bytes | null];

/**
 * An output with explicit settings, for `Writer.writeRecord`. What is left out (`undefined`) is
 * inherited from the input record; `null` sets it absent.
 */
export interface OutputRecord {
  /** The value; `null` for a tombstone. */
  readonly value: Bytes | null;
  /** One of the pipeline's outputs, instead of the default (its first). */
  readonly topic?: string;
  /** The key instead of the input's; `null` for a null key. */
  readonly key?: Bytes | null;
  /** The timestamp (ms) instead of the input's; `null` lets the producer stamp it. */
  readonly timestamp?: number | null;
  /** Whether the input's headers come first (the default), or are dropped. */
  readonly keepInputHeaders?: boolean;
  /** Headers to add after the inherited ones. */
  readonly headers?: readonly HeaderInit[];
}

/**
 * Where a transform writes the outputs of the record it is handling. Outputs inherit the
 * input's key, headers and timestamp unless `writeRecord` says otherwise, so that keyed data
 * stays in its partition downstream.
 */
export interface Writer {
  /** Writes `value` to the default output, with the input's key, headers and timestamp. */
  write(value: Bytes): void;
  /** Writes `value` to `topic`, which must be one of the pipeline's outputs. */
  writeTo(topic: string, value: Bytes): void;
  /** Serialises `value` with `JSON.stringify` and writes it like `write`. */
  writeJson(value: unknown): void;
  /** Writes an output with explicit topic, key, headers or timestamp. */
  writeRecord(record: OutputRecord): void;
}

const encoder = new TextEncoder();

/** The outputs of a batch being written, packed as the contract wants them. */
export class BatchWriter implements Writer {
  private data: Uint8Array;
  private length = 0;
  private input!: SluiceRecord;
  private inputIndex = 0;
  readonly headers: WireHeader[] = [];
  readonly records: WireOutputRecord[] = [];

  constructor(capacity: number) {
    this.data = new Uint8Array(Math.max(capacity, 256));
  }

  /** Makes `input`, at `index` in the batch, the record that following outputs derive from. */
  begin(index: number, input: SluiceRecord): void {
    this.inputIndex = index;
    this.input = input;
  }

  /** How far the writer got, to undo a failed record's outputs with `rollback`. */
  mark(): readonly [number, number, number] {
    return [this.length, this.headers.length, this.records.length];
  }

  /** Undoes the outputs written since `mark()` returned `position`. */
  rollback(position: readonly [number, number, number]): void {
    const [length, headers, records] = position;
    this.length = length;
    this.headers.length = headers;
    this.records.length = records;
  }

  /** The bytes written, which the outputs' spans point into. */
  bytes(): Uint8Array {
    return this.data.subarray(0, this.length);
  }

  write(value: Bytes): void {
    this.inherit(undefined, this.push(value));
  }

  writeTo(topic: string, value: Bytes): void {
    const topicSpan = this.push(topic);
    this.inherit(topicSpan, this.push(value));
  }

  writeJson(value: unknown): void {
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch (e) {
      throw new SluiceError(`cannot serialise output as JSON: ${(e as Error).message}`);
    }
    if (text === undefined) {
      throw new SluiceError(`cannot serialise output as JSON: ${typeof value} is not JSON`);
    }
    this.write(text);
  }

  writeRecord(record: OutputRecord): void {
    const topic = record.topic === undefined ? undefined : this.push(record.topic);
    const value = this.pushOptional(record.value);
    const key = record.key === undefined ? this.inheritedKey() : this.pushOptional(record.key);
    const timestamp = record.timestamp === undefined ? this.input.timestamp : (record.timestamp ?? undefined);
    this.finish(topic, value, key, timestamp, record.keepInputHeaders ?? true, record.headers ?? []);
  }

  /** A copy of the input's key, for an output that inherits it. */
  private inheritedKey(): Span | undefined {
    return this.input.key && this.push(this.input.key);
  }

  private pushOptional(bytes: Bytes | null): Span | undefined {
    return bytes === null ? undefined : this.push(bytes);
  }

  /** Appends `bytes` (text as UTF-8) to the data; their span. */
  private push(bytes: Bytes): Span {
    const start = this.length;
    if (typeof bytes === "string") {
      // UTF-8 takes at most 3 bytes per UTF-16 unit.
      this.reserve(3 * bytes.length);
      this.length += encoder.encodeInto(bytes, this.data.subarray(start)).written;
    } else {
      this.reserve(bytes.length);
      this.data.set(bytes, start);
      this.length += bytes.length;
    }
    return { start, len: this.length - start };
  }

  private reserve(more: number): void {
    if (this.length + more > this.data.length) {
      const grown = new Uint8Array(Math.max(2 * this.data.length, this.length + more));
      grown.set(this.bytes());
      this.data = grown;
    }
  }

  /** Writes `value` (to `topic`) with the input's key, headers and timestamp. */
  private inherit(topic: Span | undefined, value: Span): void {
    this.finish(topic, value, this.inheritedKey(), this.input.timestamp, true, []);
  }

  /** Completes an output. */
  private finish(
    topic: Span | undefined,
    value: Span | undefined,
    key: Span | undefined,
    timestamp: number | undefined,
    keepInputHeaders: boolean,
    extraHeaders: readonly HeaderInit[],
  ): void {
    const firstHeader = this.headers.length;
    if (keepInputHeaders) {
      for (const h of this.input.headers) {
        this.headers.push({ name: this.push(h.name), value: h.value && this.push(h.value) });
      }
    }
    for (const [name, headerValue] of extraHeaders) {
      this.headers.push({ name: this.push(name), value: this.pushOptional(headerValue) });
    }
    this.records.push({
      input: this.inputIndex,
      topic,
      key,
      value,
      firstHeader,
      headerCount: this.headers.length - firstHeader,
      timestamp: timestamp === undefined ? undefined : BigInt(timestamp),
    });
  }
}
