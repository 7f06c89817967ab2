/**
 * Rewrite JSON records field by field, copying what does not change exactly as it was written
 * instead of parsing and re-serialising it: numbers such as `1.50` or `1e5` stay as written, and
 * so do nested objects and escaped strings.
 *
 * One validating pass over the text gives each field of an object as its key and its value's
 * raw text (`forEachField`; `forEachElement` for arrays); an `ObjectWriter` (`ArrayWriter`)
 * builds the output, placing braces and commas. `rewriteObject` is the whole loop for the
 * common case:
 *
 * ```ts
 * out.write(json.rewriteObject(record.value, (object, key, value) => {
 *   if (key === "name") object.field("name", json.writeString(json.stringText(value).toUpperCase()));
 *   else if (key !== "secret") object.keep(key, value); // `secret` is dropped
 * }));
 * ```
 *
 * Whitespace between members is not kept; whitespace inside a kept value is. Keys are written
 * as read: unchanged when they had no escapes, escaped again as serde_json does otherwise. Errors
 * about the text read `value is not valid JSON: ...` (in serde_json's words, with its line and
 * column) or `value is not a JSON object: ...`, as in the Rust SDK. The text is a JavaScript
 * string: decode a record's bytes once (`rewriteObject` does).
 */
import { SluiceError } from "./error.ts";
import { decodeUtf8 } from "./utf8.ts";

/**
 * A problem with the text, at `at`: the index of the offending character, or the length. serde_json
 * reports the column after that character, except for `before` problems.
 */
class Malformed {
  constructor(
    readonly code: string,
    readonly at: number,
    readonly before: boolean,
  ) {}
}

function fail(code: string, at: number, before = false): never {
  throw new Malformed(code, at, before);
}

// Character codes.
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/** A whole valid string, escapes included. */
const STRING_PATTERN = String.raw`"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"`;
const NUMBER_PATTERN = String.raw`-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?`;
const STRING = new RegExp(STRING_PATTERN, "y");
const NUMBER = new RegExp(NUMBER_PATTERN, "y");
const WHITESPACE = /[ \t\n\r]*/y;

// The common cases in one match each, with no error to explain: regular expressions run in
// native code, where a loop over characters would run in the interpreter.
/** A valid scalar not followed by what would make it an invalid number. */
const SCALAR = new RegExp(`(?:${STRING_PATTERN}|${NUMBER_PATTERN}|true|false|null)(?![0-9.eE])`, "y");
/** An object's key, its colon and the whitespace after it; the key is group 1. */
const MEMBER = new RegExp(`(${STRING_PATTERN})[ \t\n\r]*:[ \t\n\r]*`, "y");

/** The index of the first character at or after `i` that is not JSON whitespace. */
function skipWhitespace(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return i;
  WHITESPACE.lastIndex = i;
  WHITESPACE.test(s);
  return WHITESPACE.lastIndex;
}

/** The end of the string starting at `i` (its opening quote). */
function scanString(s: string, i: number): number {
  STRING.lastIndex = i;
  if (STRING.test(s)) return STRING.lastIndex;
  // Invalid: find what is wrong, for the message.
  for (i++; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === BACKSLASH) {
      i++;
      if (i >= s.length) break;
      if (s[i] === "u") {
        // serde_json reads the four digits before it checks them.
        if (i + 4 >= s.length) break;
        if (!/^[0-9a-fA-F]{4}$/.test(s.slice(i + 1, i + 5))) fail("invalid escape", i + 4);
        i += 4;
      } else if (!'"\\/bfnrt'.includes(s[i]!)) {
        fail("invalid escape", i);
      }
    } else if (c < 0x20) {
      fail("control character (\\u0000-\\u001F) found while parsing a string", i, true);
    }
  }
  return fail("EOF while parsing a string", s.length);
}

/** The end of the number starting at `i`. */
function scanNumber(s: string, i: number): number {
  NUMBER.lastIndex = i;
  const number = NUMBER.exec(s)?.[0];
  if (number === undefined) {
    // A minus sign without digits.
    return fail("invalid number", Math.min(i + 1, s.length));
  }
  const end = i + number.length;
  const next = s[end] ?? "";
  // serde_json refuses a digit after a leading zero, and a dot or an exponent without digits,
  // reporting the character after the dot or the exponent's sign.
  if (/[0-9]/.test(next)) fail("invalid number", end);
  if ((next === "." && !/[.eE]/.test(number)) || (/[eE]/.test(next) && !/[eE]/.test(number))) {
    const after = /[+-]/.test(s[end + 1] ?? "") ? end + 2 : end + 1;
    fail("invalid number", Math.min(after, s.length));
  }
  return end;
}

/** The end of the literal `word` (`true`, `false` or `null`) starting at `i`. */
function scanLiteral(s: string, i: number, word: string): number {
  for (let k = 1; k < word.length; k++) {
    if (i + k >= s.length) fail("EOF while parsing a value", s.length);
    if (s[i + k] !== word[k]) fail("expected ident", i + k);
  }
  return i + word.length;
}

/** The end of the scalar (string, number or literal) starting at `i`. */
function scanScalar(s: string, i: number): number {
  SCALAR.lastIndex = i;
  if (SCALAR.test(s)) return SCALAR.lastIndex;
  if (i >= s.length) fail("EOF while parsing a value", i);
  switch (s[i]) {
    case '"':
      return scanString(s, i);
    case "t":
      return scanLiteral(s, i, "true");
    case "f":
      return scanLiteral(s, i, "false");
    case "n":
      return scanLiteral(s, i, "null");
    default:
      return /[-0-9]/.test(s[i]!) ? scanNumber(s, i) : fail("expected value", i);
  }
}

/** The end of the key (a string) expected at `i`. */
function scanKey(s: string, i: number): number {
  if (i >= s.length) fail("EOF while parsing a value", i);
  if (s.charCodeAt(i) !== QUOTE) fail("key must be a string", i);
  return scanString(s, i);
}

/** The end of the key starting at `i`, and the start of its value (after the colon). */
function scanMember(s: string, i: number): [keyEnd: number, valueStart: number] {
  MEMBER.lastIndex = i;
  const member = MEMBER.exec(s);
  if (member !== null) return [i + (member[1]?.length ?? 0), MEMBER.lastIndex];
  const keyEnd = scanKey(s, i);
  return [keyEnd, skipWhitespace(s, scanColon(s, keyEnd))];
}

/** The index after the colon expected (after whitespace) at `i`, which ends a key. */
function scanColon(s: string, i: number): number {
  i = skipWhitespace(s, i);
  if (i >= s.length) fail("EOF while parsing an object", i);
  if (s.charCodeAt(i) !== COLON) fail("expected `:`", i);
  return i + 1;
}

/** The problem of a text that ends before the bracket `close`. */
function eofIn(close: number): string {
  return close === CLOSE_BRACE ? "EOF while parsing an object" : "EOF while parsing a list";
}

/**
 * The end of the value starting at `i` (not whitespace), which is validated whole. Nesting is
 * followed with an explicit stack of the brackets to close, so any depth is fine.
 */
function scanValue(s: string, i: number): number {
  const closers: number[] = [];
  for (;;) {
    // A value starts at `i`: open its brackets, or skip it whole.
    const c = s.charCodeAt(i);
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      const close = c === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET;
      const inner = skipWhitespace(s, i + 1);
      if (inner >= s.length) fail(eofIn(close), inner);
      if (s.charCodeAt(inner) === close) {
        i = inner + 1;
      } else {
        closers.push(close);
        i = c === OPEN_BRACE ? scanMember(s, inner)[1] : inner;
        continue;
      }
    } else {
      i = scanScalar(s, i);
    }
    // After a value: close brackets until a comma announces the next value.
    for (;;) {
      const close = closers[closers.length - 1];
      if (close === undefined) return i;
      i = skipWhitespace(s, i);
      const isObject = close === CLOSE_BRACE;
      if (i >= s.length) fail(eofIn(close), i);
      const next = s.charCodeAt(i);
      if (next === close) {
        closers.pop();
        i++;
      } else if (next === COMMA) {
        i = skipWhitespace(s, i + 1);
        if (isObject) {
          i = scanMember(s, i)[1];
        }
        break;
      } else {
        fail(isObject ? "expected `,` or `}`" : "expected `,` or `]`", i);
      }
    }
  }
}

/**
 * serde_json's `line L column C` of a problem at `at`: columns count UTF-8 bytes, up to and
 * including the offending character, unless the problem is `before` it or at the end.
 */
function position(s: string, at: number, before: boolean): string {
  const lineStart = at === 0 ? 0 : s.lastIndexOf("\n", at - 1) + 1;
  let line = 1;
  for (let i = s.indexOf("\n"); i !== -1 && i < lineStart; i = s.indexOf("\n", i + 1)) line++;
  const bytes = new TextEncoder().encode(s.slice(lineStart, at)).length;
  return `line ${line} column ${at < s.length && !before ? bytes + 1 : bytes}`;
}

/** serde_json's message for a problem with the text `s`. */
function describe(problem: Malformed, s: string): string {
  return `${problem.code} at ${position(s, problem.at, problem.before)}`;
}

/**
 * Runs `read`, turning a problem with the text into `${subject} is not valid JSON: ...`; any
 * other exception (a caller's) passes as it is.
 */
function reading<T>(s: string, subject: string, read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (e instanceof Malformed) {
      throw new SluiceError(`${subject} is not valid JSON: ${describe(e, s)}`);
    }
    throw e;
  }
}

/** Checks that `s` is one whole JSON value, whitespace around it aside. */
function validate(s: string): void {
  const end = skipWhitespace(s, scanValue(s, skipWhitespace(s, 0)));
  if (end < s.length) fail("trailing characters", end);
}

/**
 * Throws unless `text` opens with `open` (after whitespace): `${subject} is not ${expected}: ...`
 * for other JSON, `${subject} is not valid JSON: ...` for anything else.
 */
function expectOpening(text: string, open: number, expected: string, subject: string): number {
  const start = skipWhitespace(text, 0);
  if (text.charCodeAt(start) !== open) {
    reading(text, subject, () => validate(text));
    throw new SluiceError(`${subject} is not ${expected}: ${excerpt(text.trim())}`);
  }
  return start;
}

/**
 * Calls `each` with the key (escapes decoded) and the raw value text of every field of the JSON
 * object `text`, in order, in one pass. Repeated keys are passed as often as they appear. The
 * whole text must be one object: otherwise throws a `SluiceError` about `subject`. An exception
 * thrown by `each` stops the pass and passes as it is.
 */
export function forEachField(
  text: string,
  each: (key: string, value: string) => void,
  subject = "value",
): void {
  const start = expectOpening(text, OPEN_BRACE, "a JSON object", subject);
  reading(text, subject, () =>
    readMembers(text, start, CLOSE_BRACE, (i) => {
      const [keyEnd, valueStart] = scanMember(text, i);
      const key = decodeString(text.slice(i, keyEnd), i);
      const valueEnd = scanValue(text, valueStart);
      each(key, text.slice(valueStart, valueEnd));
      return valueEnd;
    }),
  );
}

/**
 * Calls `each` with the raw text of every element of the JSON array `text`, in order, in one
 * pass; as `forEachField` does for objects.
 */
export function forEachElement(text: string, each: (value: string) => void, subject = "value"): void {
  const start = expectOpening(text, OPEN_BRACKET, "a JSON array", subject);
  reading(text, subject, () =>
    readMembers(text, start, CLOSE_BRACKET, (i) => {
      const end = scanValue(text, i);
      each(text.slice(i, end));
      return end;
    }),
  );
}

/**
 * The pass over the members of the object or array opened at `start`, shared by `forEachField`
 * and `forEachElement`: `member` reads the member at its index and returns where it ends; the
 * commas, the closing bracket `close` and the end of the text are checked here.
 */
function readMembers(text: string, start: number, close: number, member: (at: number) => number): void {
  let i = skipWhitespace(text, start + 1);
  if (i >= text.length) fail(eofIn(close), i);
  if (text.charCodeAt(i) === close) {
    i++;
  } else {
    for (;;) {
      i = skipWhitespace(text, member(i));
      if (i >= text.length) fail(eofIn(close), i);
      const next = text.charCodeAt(i);
      if (next === close) {
        i++;
        break;
      }
      if (next !== COMMA) fail(`expected \`,\` or \`${String.fromCharCode(close)}\``, i);
      i = skipWhitespace(text, i + 1);
      if (text.charCodeAt(i) === close) fail("trailing comma", i);
    }
  }
  i = skipWhitespace(text, i);
  if (i < text.length) fail("trailing characters", i);
}

/**
 * Rewrites the JSON object `value` (a record's bytes, or text) in one pass: `each` is called
 * with an `ObjectWriter` and every field, and writes what becomes of it (nothing, to drop it).
 * Returns the new object's text.
 */
export function rewriteObject(
  value: Uint8Array | string,
  each: (object: ObjectWriter, key: string, value: string) => void,
): string {
  const text =
    typeof value === "string" ? value : decodeUtf8(value, (why) => `value is not valid JSON: ${why}`);
  const object = new ObjectWriter();
  forEachField(text, (key, raw) => each(object, key, raw));
  return object.end();
}

/** Matches a lone surrogate, which an escape may write but no text may hold. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * The text of the valid JSON string `raw` (quotes included), which starts at `offset` of the
 * text being read. An escape that writes a lone surrogate is a problem, as for serde_json.
 */
function decodeString(raw: string, offset: number): string {
  if (!raw.includes("\\")) return raw.slice(1, -1);
  const text = JSON.parse(raw) as string;
  if (LONE_SURROGATE.test(text)) loneSurrogate(raw, offset);
  return text;
}

/** Fails at the first escape of `raw` that writes a lone surrogate, where serde_json does. */
function loneSurrogate(raw: string, offset: number): never {
  const unit = (at: number) => parseInt(raw.slice(at, at + 4), 16);
  for (let i = raw.indexOf("\\"); i !== -1; i = raw.indexOf("\\", i)) {
    if (raw[i + 1] !== "u") {
      i += 2;
      continue;
    }
    const end = i + 6;
    const first = unit(i + 2);
    if (first >= 0xdc00 && first <= 0xdfff) fail("lone leading surrogate in hex escape", offset + end - 1);
    if (first >= 0xd800 && first <= 0xdbff) {
      if (raw[end] !== "\\") fail("unexpected end of hex escape", offset + end);
      if (raw[end + 1] !== "u") fail("unexpected end of hex escape", offset + end + 1);
      const second = unit(end + 2);
      if (second < 0xdc00 || second > 0xdfff) fail("lone leading surrogate in hex escape", offset + end + 5);
      i = end + 6;
    } else {
      i = end;
    }
  }
  throw new Error("unreachable: the text holds a lone surrogate, so an escape wrote it");
}

/**
 * The text of the JSON string `raw` (a value as `forEachField` gives it, quotes included), its
 * escapes decoded. Throws a `SluiceError` when `raw` is not a string, or when an escape writes
 * a lone surrogate (in serde_json's words: `unexpected end of hex escape at line 1 column 8`).
 */
export function stringText(raw: string): string {
  if (raw.charCodeAt(0) !== QUOTE) {
    throw new SluiceError(`not a JSON string: ${excerpt(raw)}`);
  }
  try {
    return decodeString(raw, 0);
  } catch (e) {
    throw e instanceof Malformed ? new SluiceError(describe(e, raw)) : e;
  }
}

/** What JSON escapes in a string, as serde_json does: quote, backslash, control characters. */
const NEEDS_ESCAPE = /["\\\u0000-\u001f]/;
const ESCAPES: Record<string, string> = {
  '"': '\\"',
  "\\": "\\\\",
  "\b": "\\b",
  "\f": "\\f",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
};

/**
 * `text` as a JSON string, quoted and escaped exactly as serde_json writes it: `"`, `\`, the
 * short escapes, other control characters as `\u00xx`; nothing else (non-ASCII as it is).
 */
export function writeString(text: string): string {
  if (!NEEDS_ESCAPE.test(text)) return `"${text}"`;
  const escaped = text.replace(
    /["\\\u0000-\u001f]/g,
    (c) => ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  return `"${escaped}"`;
}

/** At most the first 80 characters of `text`, for error messages that quote a value. */
export function excerpt(text: string): string {
  // 162 UTF-16 units hold at least 81 characters, so this tells whether there are more than 80.
  const chars = Array.from(text.slice(0, 162));
  return chars.length > 80 ? chars.slice(0, 80).join("") : text;
}

/**
 * `text` parsed as JSON; when it is not JSON, throws a `SluiceError`
 * `${subject} is not valid JSON: ...` in serde_json's words.
 */
export function parse(text: string, subject = "value"): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    reading(text, subject, () => validate(text));
    throw new SluiceError(`${subject} is not valid JSON: ${(e as Error).message}`);
  }
}

/** Where a writer was, to go back to with `rollback`. */
export interface Checkpoint {
  readonly length: number;
  readonly empty: boolean;
}

/** The members of a JSON object or array being written, and the commas between them. */
abstract class Members {
  protected text: string;
  protected empty = true;

  constructor(open: string) {
    this.text = open;
  }

  /** Appends a member, after a comma unless it is the first. */
  protected add(member: string): void {
    this.text += this.empty ? member : `,${member}`;
    this.empty = false;
  }

  /** Where the writer is now, to undo the members written after it with `rollback`. */
  checkpoint(): Checkpoint {
    return { length: this.text.length, empty: this.empty };
  }

  /** Removes the members written since `checkpoint`. */
  rollback(checkpoint: Checkpoint): void {
    this.text = this.text.slice(0, checkpoint.length);
    this.empty = checkpoint.empty;
  }
}

/** Writes a JSON object field by field; `end` gives its text. */
export class ObjectWriter extends Members {
  constructor() {
    super("{");
  }

  /** Writes the field `name` (escaped as JSON requires) with `value`, which is JSON text. */
  field(name: string, value: string): void {
    this.add(`${writeString(name)}:${value}`);
  }

  /**
   * Writes a field whose key is given as written in JSON, quotes and escapes included, with
   * `value`, which is JSON text.
   */
  fieldAsWritten(key: string, value: string): void {
    this.add(`${key}:${value}`);
  }

  /** Copies a field read from the input: its key as read, its value exactly as written. */
  keep(key: string, value: string): void {
    this.field(key, value);
  }

  /** Closes the object: its whole text. */
  end(): string {
    return `${this.text}}`;
  }
}

/** Writes a JSON array element by element; `end` gives its text. */
export class ArrayWriter extends Members {
  constructor() {
    super("[");
  }

  /** Writes an element: `value` is JSON text. */
  element(value: string): void {
    this.add(value);
  }

  /** Closes the array: its whole text. */
  end(): string {
    return `${this.text}]`;
  }
}
