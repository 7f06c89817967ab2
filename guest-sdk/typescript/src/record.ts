import { SluiceError } from "./error.ts";
import { parse } from "./json.ts";
import { decodeUtf8 } from "./utf8.ts";

/** One record header. Kafka allows repeated names and null values. */
export interface Header {
  /** The header's name. */
  readonly name: string;
  /** The header's value; `undefined` for a null value. */
  readonly value: Uint8Array | undefined;
}

/**
 * A record read from Kafka. Its key and value are views into the batch it arrived in, valid
 * while `process` runs: copy out what you keep (`slice()`).
 */
export class SluiceRecord {
  constructor(
    /** The topic it was read from. */
    readonly topic: string,
    /** The partition it was read from. */
    readonly partition: number,
    /**
     * Its offset in that partition. A `number`, not a `bigint`: offsets stay far below 2^53 (a
     * partition taking a million records a second gets there in 285 years), and a number works
     * with arithmetic and `JSON.stringify`, which refuses bigints.
     */
    readonly offset: number,
    /** Its timestamp, milliseconds since the Unix epoch, when it has one. */
    readonly timestamp: number | undefined,
    /** Its key; `undefined` for a null key. */
    readonly key: Uint8Array | undefined,
    /** Its value; `undefined` for a null value (a tombstone). */
    readonly value: Uint8Array | undefined,
    /** Its headers, in order. */
    readonly headers: readonly Header[],
  ) {}

  /** The value as UTF-8 text; throws `record has no value` or `value is not UTF-8: ...`. */
  valueText(): string {
    return decodeUtf8(this.requireValue(), (why) => `value is not UTF-8: ${why}`);
  }

  /** The value parsed as JSON; throws `record has no value` or `value is not valid JSON: ...`. */
  json(): unknown {
    return parse(decodeUtf8(this.requireValue(), (why) => `value is not valid JSON: ${why}`));
  }

  /** The value of the first header called `name`; `undefined` if none, or if its value is null. */
  header(name: string): Uint8Array | undefined {
    return this.headers.find((h) => h.name === name)?.value;
  }

  private requireValue(): Uint8Array {
    if (this.value === undefined) {
      throw new SluiceError("record has no value");
    }
    return this.value;
  }
}
