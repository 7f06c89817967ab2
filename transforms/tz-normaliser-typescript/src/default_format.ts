/**
 * The default format, `%Y-%m-%d %H:%M:%S.%f %z`, parsed exactly as chrono 0.4 parses it for the
 * Rust tz-normaliser (chrono's `%Y-%m-%d %H:%M:%S%.f %z`), leniencies included, so that both
 * accept the same texts, read them as the same instants and fail with the same reasons:
 *
 * - whitespace (Unicode's, as Rust's `char::is_whitespace`) is skipped before every number and
 *   at every space of the format, where there may be none;
 * - an unsigned year has 1 to 4 digits, a signed one (`+10000`, `-0001`) any number; month,
 *   day, hour, minute and second 1 or 2;
 * - the fraction is optional: a dot then 1 to 9 digits, more being ignored;
 * - second 60 is a leap second (read as 59 and a billion nanoseconds more);
 * - the offset is `+`, `-` or `−` (U+2212), two digits for hours, optional colons or spaces,
 *   two digits for minutes; it must be less than a day.
 */

/** Why a text does not parse: one of chrono's `ParseErrorKind` messages. */
export class ParseError extends Error {}

const OUT_OF_RANGE = "input is out of range";
const IMPOSSIBLE = "no possible date and time matching input";
const INVALID = "input contains invalid characters";
const TOO_SHORT = "premature end of input";
const TOO_LONG = "trailing input";

/** An instant: whole seconds since the Unix epoch, and nanoseconds (≥ 10⁹ in a leap second). */
export interface Instant {
  readonly seconds: number;
  readonly nanos: number;
}

/** chrono's `NaiveDate` years. */
const MIN_YEAR = -262_143;
const MAX_YEAR = 262_142;

/** Rust's `char::is_whitespace`, a run of it. */
const WHITESPACE = /[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*/y;

/** chrono's scanner over the text: `at` is where the rest of the text starts. */
class Scanner {
  at = 0;

  constructor(private readonly text: string) {}

  /** Skips whitespace (chrono's `trim_start`). */
  skipWhitespace(): void {
    WHITESPACE.lastIndex = this.at;
    WHITESPACE.test(this.text);
    this.at = WHITESPACE.lastIndex;
  }

  literal(expected: string): void {
    if (this.at >= this.text.length) throw new ParseError(TOO_SHORT);
    if (this.text[this.at] !== expected) throw new ParseError(INVALID);
    this.at++;
  }

  /**
   * chrono's `scan::number`: 1 to `max` ASCII digits. A value beyond 2⁵³ is out of range: chrono
   * takes up to 2⁶³, but every field it sets here then refuses it as out of range too.
   */
  number(max: number): number {
    if (this.at >= this.text.length) throw new ParseError(TOO_SHORT);
    let value = 0;
    let digits = 0;
    while (digits < max && isDigit(this.text.charCodeAt(this.at))) {
      value = 10 * value + this.text.charCodeAt(this.at) - 0x30;
      if (!Number.isSafeInteger(value)) throw new ParseError(OUT_OF_RANGE);
      this.at++;
      digits++;
    }
    if (digits === 0) throw new ParseError(INVALID);
    return value;
  }

  /** A numeric field: whitespace, then 1 to `max` digits, which must be within `[min, maxValue]`. */
  field(max: number, min: number, maxValue: number): number {
    this.skipWhitespace();
    return inRange(this.number(max), min, maxValue);
  }

  /** `%Y`: an optional sign then any number of digits, or 1 to 4 digits; an `i32`. */
  year(): number {
    this.skipWhitespace();
    const sign = this.text[this.at];
    let year: number;
    if (sign === "-" || sign === "+") {
      this.at++;
      year = (sign === "-" ? -1 : 1) * this.number(Infinity);
    } else {
      year = this.number(4);
    }
    return inRange(year, -(2 ** 31), 2 ** 31 - 1);
  }

  /** `%.f`: nothing, or a dot and 1 to 9 digits (further digits skipped), as nanoseconds. */
  nanos(): number {
    if (this.text[this.at] !== ".") return 0;
    this.at++;
    const start = this.at;
    const value = this.number(9);
    const scaled = value * 10 ** (9 - (this.at - start));
    while (isDigit(this.text.charCodeAt(this.at))) this.at++;
    return scaled;
  }

  /** `%z`: chrono's `timezone_offset` with colons or spaces allowed between hours and minutes. */
  offset(): number {
    this.skipWhitespace();
    const sign = this.text[this.at];
    if (sign === undefined) throw new ParseError(TOO_SHORT);
    if (sign !== "+" && sign !== "-" && sign !== "\u2212") throw new ParseError(INVALID);
    this.at++;
    const [h1, h2] = this.twoBytes();
    if (!isDigit(h1) || !isDigit(h2)) throw new ParseError(INVALID);
    this.at += 2;
    while (this.text[this.at] === ":" || WHITESPACE_CHAR.test(this.text[this.at] ?? "")) this.at++;
    const [m1, m2] = this.twoBytes();
    if (!isDigit(m2) || !isDigit(m1)) throw new ParseError(INVALID);
    if (m1 > 0x35) throw new ParseError(OUT_OF_RANGE);
    this.at += 2;
    const seconds = (h1 - 0x30) * 36_000 + (h2 - 0x30) * 3_600 + (m1 - 0x30) * 600 + (m2 - 0x30) * 60;
    return sign === "+" ? seconds : -seconds;
  }

  /** The codes of the next two characters; too short unless they are two bytes in UTF-8. */
  private twoBytes(): [number, number] {
    const rest = this.text.length - this.at;
    if (rest === 0 || (rest === 1 && this.text.charCodeAt(this.at) < 0x80)) {
      throw new ParseError(TOO_SHORT);
    }
    return [this.text.charCodeAt(this.at), this.text.charCodeAt(this.at + 1)];
  }

  /** Fails with chrono's "trailing input" unless the whole text was read. */
  end(): void {
    if (this.at < this.text.length) throw new ParseError(TOO_LONG);
  }
}

const WHITESPACE_CHAR = /^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/;

function isDigit(code: number): boolean {
  return code >= 0x30 && code <= 0x39;
}

function inRange(value: number, min: number, max: number): number {
  if (value < min || value > max) throw new ParseError(OUT_OF_RANGE);
  return value;
}

/** The canonical shape, `2024-02-05 10:01:52.884548 -0500`, read in one match. */
const CANONICAL = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{1,9}) ([+-])(\d\d)(\d\d)$/;

/** Parses `text` in the default format; throws a `ParseError` with chrono's reason. */
export function parseDefaultFormat(text: string): Instant {
  return parseCanonical(text) ?? parseLeniently(text);
}

/**
 * The instant of a text in the canonical shape with every field in range, else `undefined`:
 * one regular expression instead of chrono's steps, for the common case (as the Rust
 * transform's fast path). Anything else goes through `parseLeniently`, which says what is wrong.
 */
function parseCanonical(text: string): Instant | undefined {
  const m = CANONICAL.exec(text);
  if (m === null) return undefined;
  const field = (group: number) => Number(m[group]);
  const [year, month, day, hour, minute, second] = [field(1), field(2), field(3), field(4), field(5), field(6)];
  const [offsetHours, offsetMinutes] = [field(9), field(10)];
  const valid =
    month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth(year, month) &&
    hour <= 23 && minute <= 59 && second <= 59 && offsetHours <= 23 && offsetMinutes <= 59;
  if (!valid) return undefined;
  const offset = (m[8] === "+" ? 1 : -1) * (offsetHours * 3_600 + offsetMinutes * 60);
  const seconds = daysFromCivil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second - offset;
  return { seconds, nanos: Number(m[7]?.padEnd(9, "0")) };
}

/** chrono's parse of the default format, step by step. */
function parseLeniently(text: string): Instant {
  const s = new Scanner(text);
  const year = s.year();
  s.literal("-");
  const month = s.field(2, 1, 12);
  s.literal("-");
  const day = s.field(2, 1, 31);
  s.skipWhitespace();
  const hour = s.field(2, 0, 23);
  s.literal(":");
  const minute = s.field(2, 0, 59);
  s.literal(":");
  const second = s.field(2, 0, 60);
  const nanos = s.nanos();
  s.skipWhitespace();
  const offset = s.offset();
  s.end();

  if (year < MIN_YEAR || year > MAX_YEAR || day > daysInMonth(year, month)) {
    throw new ParseError(OUT_OF_RANGE);
  }
  if (Math.abs(offset) >= 86_400) throw new ParseError(OUT_OF_RANGE);
  // A leap second is second 59 and a billion nanoseconds more.
  const leap = second === 60;
  const seconds =
    daysFromCivil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + (leap ? 59 : second) - offset;
  if (seconds < MIN_SECONDS || seconds > MAX_SECONDS) throw new ParseError(IMPOSSIBLE);
  return { seconds, nanos: leap ? nanos + 1_000_000_000 : nanos };
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) {
    const leapYear = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
    return leapYear ? 29 : 28;
  }
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
export function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146_097 + dayOfEra - 719_468;
}

/** The date `days` after 1970-01-01: year, month, day (the inverse of `daysFromCivil`). */
export function civilFromDays(days: number): [number, number, number] {
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const dayOfEra = z - era * 146_097;
  const yearOfEra = Math.floor(
    (dayOfEra - Math.floor(dayOfEra / 1_460) + Math.floor(dayOfEra / 36_524) - Math.floor(dayOfEra / 146_096)) / 365,
  );
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const mp = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return [yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day];
}

/** chrono's `NaiveDateTime` range, in seconds since the epoch. */
const MIN_SECONDS = daysFromCivil(MIN_YEAR, 1, 1) * 86_400;
const MAX_SECONDS = daysFromCivil(MAX_YEAR, 12, 31) * 86_400 + 86_399;
