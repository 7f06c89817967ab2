/**
 * E-mail mask, the TypeScript port of the Rust `pii-stripper`'s e-mail masking: every e-mail
 * address in the string values of a JSON record, however deeply nested in objects and arrays,
 * becomes `[EMAIL]`.
 *
 * `{"id":1,"note":"mail a@b.com"}` becomes `{"id":1,"note":"mail [EMAIL]"}`: only the detected
 * text is replaced; numbers, strings without an address and every other value keep their exact
 * bytes, and fields keep their order. Outputs are byte-identical to the pii-stripper's with
 * `phone`, `card`, `ssn`, `ipv4` and `ipv6` set to `false` (the other detectors are not ported).
 * It takes no configuration, as the Python port (`transforms/email-mask-python`).
 */
import { type Config, json, SluiceError, type SluiceRecord, type Transform, type Writer } from "sluice-sdk";

/** How deeply objects and arrays may nest; as the pii-stripper (and serde_json). */
const MAX_DEPTH = 128;

/** The pii-stripper's e-mail pattern: leftmost-first, as JavaScript's, so matches agree. */
const EMAIL =
  /[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,63}/g;

/** File names such as `logo@2x.png` have the shape of an e-mail address. */
const FILE_EXTENSIONS = new Set(["png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "ico", "bmp", "tif", "tiff", "css", "js"]);

export default class EmailMask implements Transform {
  constructor(config: Config) {
    config.allowOnly([]);
  }

  process(record: SluiceRecord, out: Writer): void {
    if (record.value === undefined) {
      // A tombstone holds nothing to strip, and still deletes its key downstream.
      out.writeRecord({ value: null });
      return;
    }
    const text = record.valueText();
    // Validates the whole value first; the walk below then only meets well-formed JSON.
    json.parse(text);
    out.write(this.value(text.trim(), 0));
  }

  /** The JSON value `raw`, found `depth` levels down, with its e-mail addresses masked. */
  private value(raw: string, depth: number): string {
    const first = raw[0];
    if ((first === "{" || first === "[") && depth === MAX_DEPTH) {
      throw new SluiceError(`value is nested deeper than ${MAX_DEPTH} levels`);
    }
    if (first === "{") {
      const object = new json.ObjectWriter();
      json.forEachField(raw, (key, member) => object.field(key, this.value(member, depth + 1)));
      return object.end();
    }
    if (first === "[") {
      const array = new json.ArrayWriter();
      json.forEachElement(raw, (element) => array.element(this.value(element, depth + 1)));
      return array.end();
    }
    if (first === '"') {
      // Only an `@`, written as it is or escaped, can start an address.
      if (!raw.includes("@") && !raw.includes("\\u")) return raw;
      const masked = maskEmails(decode(raw));
      // Without an address, as it was written, escapes included.
      return masked === undefined ? raw : json.writeString(masked);
    }
    // Numbers, booleans and null: never scanned, copied as written (`1.0` stays `1.0`).
    return raw;
  }
}

/** The text of the JSON string `raw`; one whose escapes write a lone surrogate is refused. */
function decode(raw: string): string {
  try {
    return json.stringText(raw);
  } catch (e) {
    throw new SluiceError(`value is not valid JSON: ${(e as Error).message}`);
  }
}

/** `text` with its e-mail addresses replaced by `[EMAIL]`, or `undefined` when it has none. */
export function maskEmails(text: string): string | undefined {
  if (!text.includes("@")) return undefined;
  let masked = "";
  let last = 0;
  EMAIL.lastIndex = 0;
  for (let m = EMAIL.exec(text); m !== null; m = EMAIL.exec(text)) {
    // A refused candidate is skipped whole, as the pii-stripper does for e-mails.
    if (isEmail(text, m.index, EMAIL.lastIndex)) {
      masked += `${text.slice(last, m.index)}[EMAIL]`;
      last = EMAIL.lastIndex;
    }
  }
  return last === 0 ? undefined : masked + text.slice(last);
}

/**
 * The pii-stripper's `check_email`: the local part has at most 64 characters and the whole at
 * most 254, no word character follows, and the last label is not a file extension.
 */
function isEmail(text: string, start: number, end: number): boolean {
  const at = text.indexOf("@", start);
  const tld = text.slice(text.lastIndexOf(".", end - 1) + 1, end).toLowerCase();
  return at - start <= 64 && end - start <= 254 && !/\w/.test(text[end] ?? "") && !FILE_EXTENSIONS.has(tld);
}
