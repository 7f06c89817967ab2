//! Timezone normaliser: parses a date field written in any UTC offset or IANA zone and replaces
//! it with one unambiguous instant, epoch time (default) or RFC 3339 in UTC.
//!
//! `{"date": "2024-02-05 10:01:52.884548 -0500", "message": "0"}` becomes
//! `{"timestamp": 1707145312884.548, "message": "0"}`: the new field takes the old one's place
//! and every other field is left as it was. See the crate's README for the configuration.

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{DateTime, FixedOffset, LocalResult, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::value::RawValue;
use sluice_sdk::json;
use sluice_sdk::{Config, Error, Record, Transform, Writer};
use std::borrow::Cow;

/// The format of the seed's logs, and the default.
const DEFAULT_FORMAT: &str = "%Y-%m-%d %H:%M:%S.%f %z";

/// Configuration keys, with their defaults in [`Normaliser::from_config`].
const KEYS: &[&str] = &[
    "field",
    "format",
    "output_field",
    "unit",
    "timezone",
    "output",
    "ambiguous",
    "nonexistent",
];

/// The unit of epoch output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Seconds.
    Seconds,
    /// Milliseconds (the default).
    Millis,
    /// Microseconds.
    Micros,
}

/// How the instant is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// A JSON number of `unit`s since the Unix epoch, keeping sub-unit precision as a fraction.
    Epoch(Unit),
    /// An RFC 3339 string in UTC with as many fractional digits as needed.
    Rfc3339,
}

/// Local times that occur twice in `timezone` (clocks going back) resolve to...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ambiguous {
    /// the first occurrence, as Python's `fold=0` (the default);
    Earliest,
    /// the second occurrence;
    Latest,
    /// a per-record error.
    Error,
}

/// Local times that never occur in `timezone` (clocks going forward) resolve to...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nonexistent {
    /// the same wall time shifted forward by the length of the gap, so 02:30 on a night when
    /// 02:00 jumps to 03:00 becomes 03:30 (the default; what java.time does);
    ShiftForward,
    /// a per-record error.
    Error,
}

/// The normaliser, built once from configuration.
#[derive(Debug, Clone)]
pub struct Normaliser {
    field: String,
    output_field: String,
    format: String,
    items: Vec<Item<'static>>,
    timezone: Tz,
    output: OutputFormat,
    ambiguous: Ambiguous,
    nonexistent: Nonexistent,
}

impl Normaliser {
    /// Builds the normaliser from `config`, refusing unknown keys and bad values by name.
    pub fn from_config(config: &Config) -> Result<Self, Error> {
        config.allow_only(KEYS)?;
        let format = config.get("format").unwrap_or(DEFAULT_FORMAT).to_string();
        let items = StrftimeItems::new(&python_fraction_to_chrono(&format))
            .parse_to_owned()
            .map_err(|e| {
                Error::new(format!(
                    "config key `format`: invalid format `{format}`: {e}"
                ))
            })?;
        let timezone = match config.get("timezone") {
            None => Tz::UTC,
            Some(name) => name.parse::<Tz>().map_err(|_| {
                Error::new(format!(
                    "config key `timezone`: unknown IANA time zone `{name}` (e.g. Europe/Paris)"
                ))
            })?,
        };
        let unit = match config.choice("unit", &["ms", "s", "us"])? {
            Some("s") => Unit::Seconds,
            Some("us") => Unit::Micros,
            _ => Unit::Millis,
        };
        let output = match config.choice("output", &["epoch", "rfc3339"])? {
            Some("rfc3339") => OutputFormat::Rfc3339,
            _ => OutputFormat::Epoch(unit),
        };
        let ambiguous = match config.choice("ambiguous", &["earliest", "latest", "error"])? {
            Some("latest") => Ambiguous::Latest,
            Some("error") => Ambiguous::Error,
            _ => Ambiguous::Earliest,
        };
        let nonexistent = match config.choice("nonexistent", &["shift_forward", "error"])? {
            Some("error") => Nonexistent::Error,
            _ => Nonexistent::ShiftForward,
        };
        let field = config.get("field").unwrap_or("date").to_string();
        let output_field = config
            .get("output_field")
            .unwrap_or("timestamp")
            .to_string();
        for (key, value) in [("field", &field), ("output_field", &output_field)] {
            if value.is_empty() {
                return Err(Error::new(format!("config key `{key}` must not be empty")));
            }
        }
        Ok(Normaliser {
            field,
            output_field,
            format,
            items,
            timezone,
            output,
            ambiguous,
            nonexistent,
        })
    }

    /// Parses `text` with the configured format, resolving local times in the configured zone.
    pub fn parse(&self, text: &str) -> Result<DateTime<Utc>, Error> {
        if self.format == DEFAULT_FORMAT
            && let Some(instant) = parse_default_format(text.as_bytes())
        {
            return Ok(instant);
        }
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, text, self.items.iter())
            .map_err(|e| self.parse_error(text, &e.to_string()))?;
        if parsed.offset().is_some() {
            let instant: DateTime<FixedOffset> = with_default_time(&parsed, |p| p.to_datetime())
                .map_err(|e| self.parse_error(text, &e.to_string()))?;
            return Ok(instant.with_timezone(&Utc));
        }
        let local = with_default_time(&parsed, |p| p.to_naive_datetime_with_offset(0))
            .map_err(|e| self.parse_error(text, &e.to_string()))?;
        self.resolve_local(text, local)
    }

    fn resolve_local(&self, text: &str, local: NaiveDateTime) -> Result<DateTime<Utc>, Error> {
        match self.timezone.from_local_datetime(&local) {
            LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(earliest, latest) => match self.ambiguous {
                Ambiguous::Earliest => Ok(earliest.with_timezone(&Utc)),
                Ambiguous::Latest => Ok(latest.with_timezone(&Utc)),
                Ambiguous::Error => Err(Error::new(format!(
                    "field `{}`: `{text}` occurs twice in {} (clocks go back); set `ambiguous` to earliest or latest",
                    self.field, self.timezone
                ))),
            },
            LocalResult::None => match self.nonexistent {
                Nonexistent::Error => Err(Error::new(format!(
                    "field `{}`: `{text}` does not exist in {} (clocks go forward); set `nonexistent` to shift_forward",
                    self.field, self.timezone
                ))),
                // The offset in force before the gap, applied to the wall time, lands after the
                // gap by exactly its length. A day earlier is before the gap for any offset.
                Nonexistent::ShiftForward => {
                    let before = local - chrono::Duration::days(1);
                    let offset = self.timezone.offset_from_utc_datetime(&before);
                    let offset = chrono::Offset::fix(&offset);
                    Ok(DateTime::<Utc>::from_naive_utc_and_offset(
                        local - offset,
                        Utc,
                    ))
                }
            },
        }
    }

    fn parse_error(&self, text: &str, why: &str) -> Error {
        Error::new(format!(
            "field `{}`: cannot parse `{text}` with format `{}`: {why}",
            self.field, self.format
        ))
    }

    /// Appends `instant` to `out` as configured: a JSON number or string.
    pub fn render(&self, instant: DateTime<Utc>, out: &mut Vec<u8>) {
        let (secs, nanos) = (instant.timestamp(), instant.timestamp_subsec_nanos());
        // Whole units, and the rest in nanoseconds with the number of digits it has.
        let (whole, rest, digits) = match self.output {
            OutputFormat::Rfc3339 => {
                let text = instant.to_rfc3339_opts(SecondsFormat::AutoSi, true);
                out.push(b'"');
                out.extend_from_slice(text.as_bytes());
                out.push(b'"');
                return;
            }
            // A leap second's nanoseconds run past a billion: its rest is in the next second.
            OutputFormat::Epoch(Unit::Seconds) => (
                secs + i64::from(nanos / 1_000_000_000),
                nanos % 1_000_000_000,
                9,
            ),
            OutputFormat::Epoch(Unit::Millis) => (
                secs * 1_000 + (nanos / 1_000_000) as i64,
                nanos % 1_000_000,
                6,
            ),
            OutputFormat::Epoch(Unit::Micros) => {
                (secs * 1_000_000 + (nanos / 1_000) as i64, nanos % 1_000, 3)
            }
        };
        // The exact decimal value: a double's shortest form could drop digits, and integer
        // formatting is much cheaper than float formatting, above all in Wasm.
        let mut digits_buf = itoa::Buffer::new();
        if rest == 0 {
            out.extend_from_slice(digits_buf.format(whole).as_bytes());
            return;
        }
        let (whole, rest) = if whole < 0 {
            out.push(b'-');
            (-whole - 1, 10u32.pow(digits) - rest)
        } else {
            (whole, rest)
        };
        out.extend_from_slice(digits_buf.format(whole).as_bytes());
        out.push(b'.');
        let fraction = digits_buf.format(rest);
        out.extend(std::iter::repeat_n(b'0', digits as usize - fraction.len()));
        out.extend_from_slice(fraction.trim_end_matches('0').as_bytes());
    }

    /// Normalises one JSON object: writes it to `out` with the date field replaced by the
    /// instant. Every other field keeps its position and its exact bytes. The whole per-record
    /// work, native or in Wasm, in one pass without allocating.
    pub fn normalise_value(&self, value: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        let mut found = false;
        json::rewrite_object(value, out, |object, key, raw| {
            let name = key.as_str();
            // The output field replaces any field of the same name.
            if name == self.output_field && name != self.field {
                return Ok(());
            }
            if name == self.field && !found {
                found = true;
                let instant = self.parse(&self.field_text(raw)?)?;
                self.render(instant, object.field(&self.output_field));
            } else {
                object.keep(&key, raw);
            }
            Ok(())
        })?;
        if !found {
            return Err(Error::new(format!("field `{}` is missing", self.field)));
        }
        Ok(())
    }

    /// The date field's text, borrowed unless it has escapes.
    fn field_text<'a>(&self, raw: &'a RawValue) -> Result<Cow<'a, str>, Error> {
        json::string_text(raw.get()).map_err(|_| {
            Error::new(format!(
                "field `{}` is not a string: {}",
                self.field,
                json::excerpt(raw.get())
            ))
        })
    }
}

/// The default format's canonical shape, `2024-02-05 10:01:52.884548 -0500` (1 to 9 fraction
/// digits), parsed by hand: chrono's general parser took a quarter of the transform's time.
/// Anything else, or anything out of range, is `None` and goes through chrono, so results and
/// errors are chrono's; a test checks the two agree.
fn parse_default_format(b: &[u8]) -> Option<DateTime<Utc>> {
    fn number(digits: &[u8]) -> Option<u32> {
        digits.iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    }
    let (head, rest) = b.split_at_checked(19)?;
    if [head[4], head[7], head[10], head[13], head[16]] != *b"-- ::" || rest.first() != Some(&b'.')
    {
        return None;
    }
    let rest = &rest[1..];
    let fraction_len = rest.iter().position(|d| !d.is_ascii_digit())?;
    let (fraction, offset) = rest.split_at(fraction_len);
    if !(1..=9).contains(&fraction.len()) || offset.len() != 6 || offset[0] != b' ' {
        return None;
    }
    let nanos = number(fraction)? * 10u32.pow(9 - fraction.len() as u32);
    let (hours, minutes) = (number(&offset[2..4])?, number(&offset[4..6])?);
    let sign = match offset[1] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(
        number(&head[0..4])? as i32,
        number(&head[5..7])?,
        number(&head[8..10])?,
    )?;
    let local = date.and_hms_nano_opt(
        number(&head[11..13])?,
        number(&head[14..16])?,
        number(&head[17..19])?,
        nanos,
    )?;
    let offset = chrono::TimeDelta::seconds(sign * i64::from(hours * 3600 + minutes * 60));
    Some(local.checked_sub_signed(offset)?.and_utc())
}

/// Formats without a time of day (`%Y-%m-%d`) mean midnight, as in Python's `strptime`.
fn with_default_time<T>(
    parsed: &Parsed,
    build: impl Fn(&Parsed) -> chrono::ParseResult<T>,
) -> chrono::ParseResult<T> {
    match build(parsed) {
        Err(e) if parsed.hour_div_12().is_none() && parsed.minute().is_none() => {
            let mut midnight = parsed.clone();
            midnight
                .set_hour(0)
                .and_then(|_| midnight.set_minute(0))
                .map_err(|_| e)?;
            build(&midnight)
        }
        other => other,
    }
}

/// Python's `%f` is a fraction of 1 to 6 digits; chrono's `%f` is a count of nanoseconds.
/// `.%f` becomes chrono's `%.f` (a dot and 1 to 9 digits), a bare `%f` becomes `%6f`.
fn python_fraction_to_chrono(format: &str) -> String {
    let mut out = String::with_capacity(format.len());
    let mut rest = format;
    while let Some(at) = rest.find('%') {
        let (before, spec) = rest.split_at(at);
        let next = spec[1..].chars().next();
        match next {
            Some('f') if before.ends_with('.') => {
                out.push_str(&before[..before.len() - 1]);
                out.push_str("%.f");
            }
            Some('f') => {
                out.push_str(before);
                out.push_str("%6f");
            }
            Some(c) => {
                out.push_str(before);
                out.push('%');
                out.push(c);
            }
            None => {
                out.push_str(rest);
                return out;
            }
        }
        rest = &spec[1 + next.map_or(0, char::len_utf8)..];
    }
    out.push_str(rest);
    out
}

/// The transform: one [`Normaliser`] per instance.
pub struct TzNormaliser(Normaliser);

impl Transform for TzNormaliser {
    fn init(config: &Config) -> Result<Self, Error> {
        Normaliser::from_config(config).map(TzNormaliser)
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Writer<'_>) -> Result<(), Error> {
        let value = record
            .value
            .ok_or_else(|| Error::new("record has no value"))?;
        out.write_with(|buf| self.0.normalise_value(value, buf))
    }
}

sluice_sdk::export!(TzNormaliser);

#[cfg(test)]
mod tests;
