//! Windowed aggregate: count, sum, average, minimum and maximum of a numeric field per key, in
//! tumbling, hopping or session event-time windows ([`sluice_sdk::window`]), or as a running
//! aggregate.
//!
//! Semantics as Kafka Streams' grace period: a window `[start, end)` closes when stream time (the
//! highest event time seen) reaches `end + allowed_lateness`; a session window `[start, end]`
//! (its first and last record) when it reaches `end + session_gap + allowed_lateness`. With `emit = "final"` (the
//! default) its result is written once, when it closes; with `"updates"`, after every record
//! that changes it. A record whose windows have all closed is late: it fails with a message
//! that starts with `late:`, so it goes to the dead-letter topic. Without `window`, every record
//! updates its key's running aggregate, which is written after it (seed 001's running sum).
//!
//! Output: `{"key", "window_start", "window_end", "count", "sum", "avg", "min", "max"}`, window
//! bounds in epoch milliseconds, only the aggregations asked for, no window fields for a running
//! aggregate. See the crate's README for the configuration.

use chrono::DateTime;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sluice_sdk::state::{self, Timer};
use sluice_sdk::window::{self, Window, Windowed, Windows};
use sluice_sdk::{Config, Error, OutputRecord, Record, StatefulTransform, Transform, Writer};

const KEYS: &[&str] = &[
    "key",
    "time",
    "value",
    "window",
    "slide",
    "session_gap",
    "allowed_lateness",
    "emit",
    "aggregations",
];

const AGGREGATIONS: &[&str] = &["count", "sum", "avg", "min", "max"];

/// The format of the seeds' dates, besides RFC 3339.
const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.f %z";

/// State key prefix of running aggregates (windows keep theirs under [`Windowed`]'s name).
const RUNNING: u8 = b'R';

/// The aggregate of one window or running key, as kept in state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Aggregate {
    count: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
}

impl window::Aggregate for Aggregate {
    type Input = f64;

    fn add(&mut self, value: &f64) {
        self.count += 1;
        self.sum += value;
        self.min = Some(self.min.map_or(*value, |m| m.min(*value)));
        self.max = Some(self.max.map_or(*value, |m| m.max(*value)));
    }

    fn merge(&mut self, other: Aggregate) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = [self.min, other.min].into_iter().flatten().reduce(f64::min);
        self.max = [self.max, other.max].into_iter().flatten().reduce(f64::max);
    }
}

/// The transform.
#[derive(Debug)]
pub struct WindowedAggregate {
    key: Option<String>,
    time: Option<String>,
    value: Option<String>,
    windowed: Option<Windowed>,
    emit_updates: bool,
    aggregations: Vec<&'static str>,
}

impl Transform for WindowedAggregate {
    fn init(config: &Config) -> Result<Self, Error> {
        config.allow_only(KEYS)?;
        let duration = |key: &str| -> Result<Option<i64>, Error> {
            config
                .get(key)
                .map(|text| parse_duration(text).map_err(|why| Error::new(format!("{key}: {why}"))))
                .transpose()
        };
        let windows = match (
            duration("window")?,
            duration("slide")?,
            duration("session_gap")?,
        ) {
            (None, None, None) => None,
            (Some(_), _, Some(_)) => {
                return Err(Error::new(
                    "session_gap: sessions have no fixed `window` size; give one or the other",
                ));
            }
            (None, Some(_), _) => {
                return Err(Error::new("slide: hopping windows need a `window` size"));
            }
            (None, None, Some(gap)) => Some(Windows::Session { gap }),
            (Some(size), None, None) => Some(Windows::Tumbling { size }),
            (Some(size), Some(slide), None) => Some(Windows::Hopping { size, slide }),
        };
        if let Some(windows) = windows {
            windows
                .validate()
                .map_err(|e| Error::new(format!("window, slide, session_gap: {}", e.message())))?;
        }
        let lateness = duration("allowed_lateness")?.unwrap_or(0);
        let windowed = windows
            .map(|windows| Windowed::new("W", windows, lateness))
            .transpose()?;
        let emit_updates = match config.choice("emit", &["final", "updates"])? {
            Some("updates") => true,
            Some(_) if windowed.is_none() => {
                return Err(Error::new(
                    "emit: a running aggregate (no `window`) writes an update per record; `final` needs a `window`",
                ));
            }
            _ => windowed.is_none(),
        };
        let aggregations = match config.get("aggregations") {
            None => AGGREGATIONS.to_vec(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .map(|name| {
                    AGGREGATIONS
                        .iter()
                        .copied()
                        .find(|a| *a == name)
                        .ok_or_else(|| {
                            Error::new(format!(
                                "aggregations: `{name}` is not one of {}",
                                AGGREGATIONS.join(", ")
                            ))
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        let value = config.get("value").map(str::to_string);
        if value.is_none() && aggregations.iter().any(|a| *a != "count") {
            return Err(Error::new(
                "value: the numeric field to aggregate is required unless aggregations = \"count\"",
            ));
        }
        Ok(WindowedAggregate {
            key: config.get("key").map(str::to_string),
            time: config.get("time").map(str::to_string),
            value,
            windowed,
            emit_updates,
            aggregations,
        })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Writer<'_>) -> Result<(), Error> {
        let fields: Map<String, Value> = record.json()?;
        let key = match &self.key {
            None => Value::Null,
            Some(field) => fields
                .get(field)
                .cloned()
                .ok_or_else(|| Error::new(format!("the key field `{field}` is missing")))?,
        };
        let value = match &self.value {
            None => 0.0,
            Some(field) => fields.get(field).and_then(Value::as_f64).ok_or_else(|| {
                Error::new(format!(
                    "the value field `{field}` is missing or not a number"
                ))
            })?,
        };
        let group = group_key(&key);
        let Some(windowed) = &self.windowed else {
            let state_key = [&[RUNNING][..], &group].concat();
            let mut aggregate: Aggregate = state::get_json(&state_key)?.unwrap_or_default();
            window::Aggregate::add(&mut aggregate, &value);
            state::put_json(&state_key, &aggregate)?;
            return self.write(&key, &aggregate, None, out);
        };
        let time = self.event_time(&fields, record)?;
        for (window, aggregate) in windowed.add::<Aggregate>(&group, time, &value)? {
            if self.emit_updates {
                self.write(&key, &aggregate, Some(window), out)?;
            }
        }
        Ok(())
    }
}

impl StatefulTransform for WindowedAggregate {
    fn on_timer(&mut self, timer: &Timer, out: &mut Writer<'_>) -> Result<(), Error> {
        let Some(windowed) = &self.windowed else {
            return Ok(());
        };
        let Some(closed) = windowed.close::<Aggregate>(timer)? else {
            return Ok(());
        };
        if self.emit_updates {
            return Ok(());
        }
        let key: Value = serde_json::from_slice(&closed.key)
            .map_err(|e| Error::new(format!("state: a window's key is unreadable: {e}")))?;
        self.write(&key, &closed.aggregate, Some(closed.window), out)
    }
}

impl WindowedAggregate {
    /// The record's event time: from the `time` field, or its timestamp.
    fn event_time(&self, fields: &Map<String, Value>, record: &Record<'_>) -> Result<i64, Error> {
        let Some(field) = &self.time else {
            return record.timestamp.ok_or_else(|| {
                Error::new(
                    "the record has no timestamp; name the field holding its time with `time`",
                )
            });
        };
        match fields.get(field) {
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .ok_or_else(|| {
                    Error::new(format!(
                        "the time field `{field}` is not a number of milliseconds"
                    ))
                }),
            Some(Value::String(text)) => parse_time(text).ok_or_else(|| {
                Error::new(format!(
                    "the time field `{field}` is not a date: `{text}` (RFC 3339 or `{DATE_FORMAT}`)"
                ))
            }),
            _ => Err(Error::new(format!("the time field `{field}` is missing"))),
        }
    }

    /// Writes `aggregate` as the output JSON, keyed by its group key.
    fn write(
        &self,
        key: &Value,
        aggregate: &Aggregate,
        window: Option<Window>,
        out: &mut Writer<'_>,
    ) -> Result<(), Error> {
        // Fields in the documented order (a `Map` would sort them).
        let mut fields: Vec<(&str, Value)> = vec![("key", key.clone())];
        if let Some(window) = window {
            fields.push(("window_start", window.start.into()));
            fields.push(("window_end", window.end.into()));
        }
        for name in &self.aggregations {
            let value = match *name {
                "count" => aggregate.count.into(),
                "sum" => number(aggregate.sum),
                "avg" => number(aggregate.sum / aggregate.count as f64),
                "min" => aggregate.min.map_or(Value::Null, number),
                _ => aggregate.max.map_or(Value::Null, number),
            };
            fields.push((name, value));
        }
        let mut bytes = vec![b'{'];
        for (i, (name, value)) in fields.iter().enumerate() {
            if i > 0 {
                bytes.push(b',');
            }
            serde_json::to_writer(&mut bytes, name).map_err(|e| Error::new(e.to_string()))?;
            bytes.push(b':');
            serde_json::to_writer(&mut bytes, value).map_err(|e| Error::new(e.to_string()))?;
        }
        bytes.push(b'}');
        let key = match key {
            Value::Null => None,
            Value::String(s) => Some(s.as_bytes().to_vec()),
            other => Some(other.to_string().into_bytes()),
        };
        out.write_record(OutputRecord::new(Some(&bytes)).key(key.as_deref()))
    }
}

/// Whole numbers print without a fraction, as they came in.
fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        (value as i64).into()
    } else {
        serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
    }
}

/// The group key's bytes: its JSON text, so that `1` and `"1"` stay apart.
fn group_key(key: &Value) -> Vec<u8> {
    key.to_string().into_bytes()
}

/// `"10s"`, `"1h"`, `"500ms"`, `"2m"`, `"1d"` in milliseconds.
fn parse_duration(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: i64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as \"10s\", \"5m\" or \"1h\""))?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("`{text}`: the unit must be ms, s, m, h or d")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too long"))
}

fn parse_time(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, DATE_FORMAT))
        .ok()
        .map(|t| t.timestamp_millis())
}

sluice_sdk::export_stateful!(WindowedAggregate);

#[cfg(test)]
mod tests;
