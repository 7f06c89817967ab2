/**
 * Timezone normaliser, the TypeScript port of the Rust `tz-normaliser`: parses a date field and
 * replaces it with one unambiguous instant, epoch time (default) or RFC 3339 in UTC.
 *
 * `{"date": "2024-02-05 10:01:52.884548 -0500", "message": "0"}` becomes
 * `{"timestamp":1707145312884.548,"message":"0"}`: the new field takes the old one's place and
 * every other field keeps its position and its exact bytes. Outputs are byte-identical to the
 * Rust transform's. Only the default format is supported, which always carries an offset: the
 * JavaScript engine inside a component has no time zone data (no `Intl`).
 */
import { Config, json, SluiceError, type SluiceRecord, type Transform, type Writer } from "sluice-sdk";
import { civilFromDays, type Instant, ParseError, parseDefaultFormat } from "./default_format.ts";

/** The format of the seed's logs, the default, and the only one this port reads. */
const DEFAULT_FORMAT = "%Y-%m-%d %H:%M:%S.%f %z";

/** Configuration keys: the Rust transform's, so that the same deployment works with either. */
const KEYS = ["field", "format", "output_field", "unit", "timezone", "output", "ambiguous", "nonexistent"];

/** How the instant is written: a number of seconds, milliseconds or microseconds, or RFC 3339. */
type Output = "s" | "ms" | "us" | "rfc3339";

export default class TzNormaliser implements Transform {
  private readonly field: string;
  private readonly outputField: string;
  private readonly output: Output;

  constructor(config: Config) {
    config.allowOnly(KEYS);
    const format = config.get("format");
    if (format !== undefined && format !== DEFAULT_FORMAT) {
      throw new SluiceError(
        `config key \`format\`: only the default \`${DEFAULT_FORMAT}\` is supported by the TypeScript tz-normaliser; use the Rust one for \`${format}\``,
      );
    }
    const timezone = config.get("timezone");
    if (timezone !== undefined && timezone !== "UTC") {
      throw new SluiceError(
        `config key \`timezone\`: only \`UTC\` is supported by the TypeScript tz-normaliser (its engine has no time zone data); use the Rust one for \`${timezone}\``,
      );
    }
    const unit = config.choice("unit", ["ms", "s", "us"]) ?? "ms";
    this.output = config.choice("output", ["epoch", "rfc3339"]) === "rfc3339" ? "rfc3339" : unit;
    // Without a time zone these never apply; they are still checked, as the Rust transform does.
    config.choice("ambiguous", ["earliest", "latest", "error"]);
    config.choice("nonexistent", ["shift_forward", "error"]);
    this.field = config.get("field") ?? "date";
    this.outputField = config.get("output_field") ?? "timestamp";
    for (const [key, value] of [["field", this.field], ["output_field", this.outputField]]) {
      if (value === "") throw new SluiceError(`config key \`${key}\` must not be empty`);
    }
  }

  process(record: SluiceRecord, out: Writer): void {
    if (record.value === undefined) throw new SluiceError("record has no value");
    let found = false;
    const normalised = json.rewriteObject(record.value, (object, key, raw) => {
      // The output field replaces any field of the same name.
      if (key === this.outputField && key !== this.field) return;
      if (key === this.field && !found) {
        found = true;
        object.field(this.outputField, this.render(this.parse(this.fieldText(raw))));
      } else {
        object.keep(key, raw);
      }
    });
    if (!found) throw new SluiceError(`field \`${this.field}\` is missing`);
    out.write(normalised);
  }

  /** The date field's text. */
  private fieldText(raw: string): string {
    try {
      return json.stringText(raw);
    } catch {
      throw new SluiceError(`field \`${this.field}\` is not a string: ${json.excerpt(raw)}`);
    }
  }

  private parse(text: string): Instant {
    try {
      return parseDefaultFormat(text);
    } catch (e) {
      if (!(e instanceof ParseError)) throw e;
      throw new SluiceError(
        `field \`${this.field}\`: cannot parse \`${text}\` with format \`${DEFAULT_FORMAT}\`: ${e.message}`,
      );
    }
  }

  /** The instant as JSON: a number or a string, as configured. */
  private render(instant: Instant): string {
    return this.output === "rfc3339" ? `"${rfc3339(instant)}"` : epoch(instant, this.output);
  }
}

/** Per unit: how many per second, and the digits of nanoseconds below one unit. */
const UNITS = { s: [1n, 9], ms: [1_000n, 6], us: [1_000_000n, 3] } as const;

/**
 * The exact decimal number of `unit`s since the epoch, as the Rust transform's `render` writes
 * it: whole units, then the rest (nanoseconds below one unit) without trailing zeros. A double's
 * shortest form could drop digits; bigints keep microseconds exact far beyond 2⁵³.
 */
function epoch({ seconds, nanos }: Instant, unit: "s" | "ms" | "us"): string {
  const [perSecond, digits] = UNITS[unit];
  const nanosPerUnit = 10 ** digits;
  let whole = BigInt(seconds) * perSecond + BigInt(Math.floor(nanos / nanosPerUnit));
  let rest = nanos % nanosPerUnit;
  if (rest === 0) return whole.toString();
  let sign = "";
  if (whole < 0n) {
    sign = "-";
    whole = -whole - 1n;
    rest = nanosPerUnit - rest;
  }
  return `${sign}${whole}.${String(rest).padStart(digits, "0").replace(/0+$/, "")}`;
}

/**
 * The instant in RFC 3339, UTC, as chrono's `to_rfc3339_opts(SecondsFormat::AutoSi, true)`
 * writes it: 0, 3, 6 or 9 fraction digits, `Z`, a leap second as second 60, and years beyond
 * 0..=9999 signed.
 */
function rfc3339({ seconds, nanos }: Instant): string {
  const days = Math.floor(seconds / 86_400);
  const ofDay = seconds - days * 86_400;
  const [year, month, day] = civilFromDays(days);
  const leap = nanos >= 1_000_000_000;
  const nano = leap ? nanos - 1_000_000_000 : nanos;
  const two = (n: number) => String(n).padStart(2, "0");
  const yearText =
    year >= 0 && year <= 9999 ? String(year).padStart(4, "0") : `${year < 0 ? "-" : "+"}${String(Math.abs(year)).padStart(4, "0")}`;
  const time = `${two(Math.floor(ofDay / 3_600))}:${two(Math.floor(ofDay / 60) % 60)}:${two((ofDay % 60) + (leap ? 1 : 0))}`;
  return `${yearText}-${two(month)}-${two(day)}T${time}${fraction(nano)}Z`;
}

/** chrono's `AutoSi` fraction: none, or 3, 6 or 9 digits, whichever shows every nonzero one. */
function fraction(nano: number): string {
  if (nano === 0) return "";
  if (nano % 1_000_000 === 0) return `.${String(nano / 1_000_000).padStart(3, "0")}`;
  if (nano % 1_000 === 0) return `.${String(nano / 1_000).padStart(6, "0")}`;
  return `.${String(nano).padStart(9, "0")}`;
}
