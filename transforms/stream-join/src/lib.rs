//! Stream join: joins two co-partitioned streams of JSON records on a key field, within a time
//! bound (a stream-stream INNER or LEFT JOIN), as Kafka Streams' KStream-KStream join with
//! `JoinWindows.ofTimeDifferenceAndGrace(within, grace)`.
//!
//! Every record is kept in [`state`] under its side and join key, with its event time, holding
//! only the fields it contributes to outputs. A record that arrives joins every kept record of
//! the other side with the same key whose event time is at most `within` from its own: one
//! output per pair, `{"key", <left fields>, <right fields>}`, stamped with the later of the two
//! event times. A record whose event time + `within` + `grace` is before stream time is late: it
//! fails with a message that starts with `late:` (so it goes to the dead-letter topic), and is
//! neither kept nor joined.
//!
//! A kept record is dropped by a timer once no record that is not late can join it any more:
//! at event time + 2 x `within` + `grace` + 1 (a record of the other side up to `within` later
//! is not late until stream time passes its own time + `within` + `grace`). With
//! `kind = "left"`, a left record that has joined nothing by then is written on its own.
//!
//! The runtime gives both input topics' partitions of one number to one task, so the records of
//! both sides with the same key (co-partitioned) meet in one state. See the crate's README for
//! the configuration.

use chrono::{DateTime, NaiveDateTime};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use sluice_sdk::json::{self, ObjectKey};
use sluice_sdk::state::{self, Timer};
use sluice_sdk::{Config, Error, OutputRecord, Record, StatefulTransform, Transform, Writer};

const KEYS: &[&str] = &[
    "left_topic",
    "right_topic",
    "left_key",
    "right_key",
    "within",
    "grace",
    "time",
    "kind",
    "left_fields",
    "right_fields",
];

/// The format of the seeds' dates, besides RFC 3339.
const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.f %z";

/// Dates without an offset (seed 004's `ts`), read as UTC.
const NAIVE_DATE_FORMATS: &[&str] = &["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"];

/// First byte of every state key of a kept record (the only state this transform keeps).
const KEPT: u8 = b'J';

/// Bytes after a kept record's time in its state key: its partition (4) and offset (8).
const SUFFIX_LEN: usize = 12;

/// Kept records read per call to the host while looking for partners.
const PAGE: u32 = 256;

/// Which input a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

impl Side {
    /// Its byte in state keys.
    fn tag(self) -> u8 {
        match self {
            Side::Left => b'L',
            Side::Right => b'R',
        }
    }

    fn from_tag(tag: u8) -> Option<Side> {
        match tag {
            b'L' => Some(Side::Left),
            b'R' => Some(Side::Right),
            _ => None,
        }
    }

    fn other(self) -> Side {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Side::Left => "left",
            Side::Right => "right",
        }
    }
}

/// How one side's records are read.
#[derive(Debug)]
struct SideConfig {
    topic: String,
    /// The field holding the join key.
    key: String,
    /// The fields it contributes to outputs, in output order; `None` for all, in record order.
    fields: Option<Vec<String>>,
}

/// The transform.
#[derive(Debug)]
pub struct StreamJoin {
    left: SideConfig,
    right: SideConfig,
    /// The field holding the event time; `None` for the record timestamp.
    time: Option<String>,
    /// Largest difference of event times that joins, in milliseconds.
    within: i64,
    /// How much later than `within` a record may still come, in milliseconds.
    grace: i64,
    /// How long after its event time a record is kept: 2 x `within` + `grace` + 1.
    retention: i64,
    /// `kind = "left"`: left records that join nothing are written on their own.
    left_join: bool,
}

/// What is kept of a record in state until no record of the other side can join it.
#[derive(Debug, Serialize, Deserialize)]
struct Kept {
    /// The join key field's value, as written in the record.
    key: Box<RawValue>,
    /// The fields it contributes to outputs, in output order, values as written.
    fields: Vec<(String, Box<RawValue>)>,
    /// Whether it has joined a record of the other side (what a left join's timer reads).
    matched: bool,
}

/// An input record as the join sees it.
struct Arrival {
    kept: Kept,
    /// The join key: a string's text, or a number as written.
    key_text: String,
    time: i64,
}

/// The parts of a kept record's state key (which is also its timer's key).
#[derive(Debug, PartialEq, Eq)]
struct KeptKey {
    side: Side,
    key: Vec<u8>,
    time: i64,
}

impl Transform for StreamJoin {
    fn init(config: &Config) -> Result<Self, Error> {
        config.allow_only(KEYS)?;
        let required = |key: &str| -> Result<String, Error> {
            let value = config.require(key)?.trim();
            if value.is_empty() {
                return Err(Error::new(format!("{key}: must not be empty")));
            }
            Ok(value.to_string())
        };
        let left = SideConfig {
            topic: required("left_topic")?,
            key: required("left_key")?,
            fields: field_list(config, "left_fields")?,
        };
        let right = SideConfig {
            topic: required("right_topic")?,
            key: required("right_key")?,
            fields: field_list(config, "right_fields")?,
        };
        if left.topic == right.topic {
            return Err(Error::new(format!(
                "right_topic: `{}` is left_topic too; each side needs a topic of its own",
                right.topic
            )));
        }
        let duration = |key: &str| -> Result<Option<i64>, Error> {
            config
                .get(key)
                .map(|text| parse_duration(text).map_err(|why| Error::new(format!("{key}: {why}"))))
                .transpose()
        };
        let within = duration("within")?.ok_or_else(|| {
            Error::new("config key `within` is required: the largest time between records that join, such as \"7d\"")
        })?;
        let grace = duration("grace")?.unwrap_or(0);
        let retention = within
            .checked_mul(2)
            .and_then(|r| r.checked_add(grace))
            .and_then(|r| r.checked_add(1))
            .ok_or_else(|| Error::new("within, grace: too long to add up"))?;
        let time = match config.get("time").map(str::trim) {
            Some("") => return Err(Error::new("time: must not be empty")),
            other => other.map(str::to_string),
        };
        let left_join = config.choice("kind", &["inner", "left"])? == Some("left");
        Ok(StreamJoin {
            left,
            right,
            time,
            within,
            grace,
            retention,
            left_join,
        })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Writer<'_>) -> Result<(), Error> {
        let side = self.side_of(record)?;
        let arrival = self.read(side, record)?;
        let time = arrival.time;
        state::observe(time);
        let now = state::stream_time().unwrap_or(time);
        if time.saturating_add(self.within).saturating_add(self.grace) < now {
            return Err(Error::new(format!(
                "late: event time {time} is more than within + grace ({} ms) before stream time {now}",
                self.within + self.grace
            )));
        }

        // Errors do not undo state writes, so every write comes after the last thing that can
        // fail; outputs of a failed record are discarded by the SDK.
        let key = arrival.key_text.as_bytes();
        let mut matched = false;
        let mut newly_matched_left = Vec::new();
        let from = time.saturating_sub(self.within);
        let to = time.saturating_add(self.within);
        for (state_key, value) in kept_between(side.other(), key, from, to)? {
            let partner_time = decode_kept_key(&state_key)
                .ok_or_else(|| Error::new("state: a kept record's key is unreadable"))?
                .time;
            let mut partner: Kept = serde_json::from_slice(&value)
                .map_err(|e| Error::new(format!("state: a kept record is unreadable: {e}")))?;
            matched = true;
            let (left, right) = match side {
                Side::Left => (&arrival.kept, &partner),
                Side::Right => (&partner, &arrival.kept),
            };
            self.write(
                &arrival.key_text,
                left,
                Some(right),
                time.max(partner_time),
                out,
            )?;
            if self.left_join && side == Side::Right && !partner.matched {
                partner.matched = true;
                newly_matched_left.push((state_key, encode(&partner)?));
            }
        }
        let state_key = kept_key(side, key, time, record.partition, record.offset)?;
        let kept = encode(&Kept {
            matched,
            ..arrival.kept
        })?;

        for (state_key, value) in newly_matched_left {
            state::put(&state_key, &value);
        }
        state::put(&state_key, &kept);
        state::set_timer(&state_key, time.saturating_add(self.retention));
        Ok(())
    }
}

impl StatefulTransform for StreamJoin {
    fn on_timer(&mut self, timer: &Timer, out: &mut Writer<'_>) -> Result<(), Error> {
        let Some(kept_key) = decode_kept_key(&timer.key) else {
            return Ok(());
        };
        let Some(value) = state::get(&timer.key) else {
            return Ok(());
        };
        // Dropped even if unreadable: nothing could read it later either.
        state::delete(&timer.key);
        if !(self.left_join && kept_key.side == Side::Left) {
            return Ok(());
        }
        let kept: Kept = serde_json::from_slice(&value)
            .map_err(|e| Error::new(format!("state: a kept record is unreadable: {e}")))?;
        if kept.matched {
            return Ok(());
        }
        let key_text = String::from_utf8_lossy(&kept_key.key);
        self.write(&key_text, &kept, None, kept_key.time, out)
    }
}

impl StreamJoin {
    fn side_config(&self, side: Side) -> &SideConfig {
        match side {
            Side::Left => &self.left,
            Side::Right => &self.right,
        }
    }

    /// The side of the record's topic.
    fn side_of(&self, record: &Record<'_>) -> Result<Side, Error> {
        if record.topic == self.left.topic {
            Ok(Side::Left)
        } else if record.topic == self.right.topic {
            Ok(Side::Right)
        } else {
            Err(Error::new(format!(
                "the record's topic `{}` is neither left_topic `{}` nor right_topic `{}`",
                record.topic, self.left.topic, self.right.topic
            )))
        }
    }

    /// Reads the join key, the event time and the fields to keep from a record of `side`, in
    /// one pass over its value.
    fn read(&self, side: Side, record: &Record<'_>) -> Result<Arrival, Error> {
        let config = self.side_config(side);
        let value = record
            .value
            .ok_or_else(|| Error::new("record has no value"))?;
        let text = std::str::from_utf8(value).map_err(json::ReadError::from)?;
        let mut key = None;
        let mut time = None;
        let mut fields: Vec<(String, &RawValue)> = Vec::new();
        json::for_each_field(text, |name: ObjectKey<'_>, value: &RawValue| {
            let name = name.as_str();
            if name == config.key {
                key = Some(value);
            }
            if self.time.as_deref() == Some(name) {
                time = Some(value);
            }
            let wanted = config
                .fields
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| n == name));
            if wanted {
                // A repeated field: the last value counts, as in serde_json.
                match fields.iter_mut().find(|(n, _)| n == name) {
                    Some(field) => field.1 = value,
                    None => fields.push((name.to_string(), value)),
                }
            }
            Ok(())
        })?;

        let key = key.ok_or_else(|| {
            Error::new(format!(
                "the {} key field `{}` is missing",
                side.name(),
                config.key
            ))
        })?;
        let key_text = key_text(key).ok_or_else(|| {
            Error::new(format!(
                "the {} key field `{}` is not a string or a number: {}",
                side.name(),
                config.key,
                json::excerpt(key.get())
            ))
        })?;
        if key_text.len() > usize::from(u16::MAX) {
            return Err(Error::new(format!(
                "the {} key field `{}` is {} bytes long; a join key is at most 65535",
                side.name(),
                config.key,
                key_text.len()
            )));
        }
        let time = self.event_time(time, record)?;
        // Selected fields come in the order they were listed; missing ones are left out.
        if let Some(names) = &config.fields {
            fields = names
                .iter()
                .filter_map(|name| fields.iter().find(|(n, _)| n == name).cloned())
                .collect();
        }
        Ok(Arrival {
            kept: Kept {
                key: key.to_owned(),
                fields: fields
                    .into_iter()
                    .map(|(name, value)| (name, value.to_owned()))
                    .collect(),
                matched: false,
            },
            key_text,
            time,
        })
    }

    /// The record's event time: from the `time` field (`raw`, its value), or its timestamp.
    fn event_time(&self, raw: Option<&RawValue>, record: &Record<'_>) -> Result<i64, Error> {
        let Some(field) = &self.time else {
            return record.timestamp.ok_or_else(|| {
                Error::new(
                    "the record has no timestamp; name the field holding its time with `time`",
                )
            });
        };
        let value: Option<Value> = raw.and_then(|raw| serde_json::from_str(raw.get()).ok());
        match value {
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .ok_or_else(|| {
                    Error::new(format!(
                        "the time field `{field}` is not a number of milliseconds"
                    ))
                }),
            Some(Value::String(text)) => parse_time(&text).ok_or_else(|| {
                Error::new(format!(
                    "the time field `{field}` is not a date: `{text}` (RFC 3339 or `{DATE_FORMAT}`)"
                ))
            }),
            None => Err(Error::new(format!("the time field `{field}` is missing"))),
            Some(_) => Err(Error::new(format!(
                "the time field `{field}` is neither epoch milliseconds nor a date"
            ))),
        }
    }

    /// Writes the output of `left` joined with `right` (`None`: a left record that joined
    /// nothing), keyed by the join key.
    fn write(
        &self,
        key_text: &str,
        left: &Kept,
        right: Option<&Kept>,
        timestamp: i64,
        out: &mut Writer<'_>,
    ) -> Result<(), Error> {
        let mut bytes = Vec::new();
        let mut object = json::ObjectWriter::new(&mut bytes);
        let mut names = vec!["key".to_string()];
        object
            .field("key")
            .extend_from_slice(left.key.get().as_bytes());
        let sides = [(&left.fields, "left_")]
            .into_iter()
            .chain(right.map(|right| (&right.fields, "right_")));
        for (fields, prefix) in sides {
            for (name, value) in fields {
                // On a clash the later field is renamed: `left_key`, `right_<name>`.
                let mut name = name.clone();
                while names.contains(&name) {
                    name.insert_str(0, prefix);
                }
                object
                    .field(&name)
                    .extend_from_slice(value.get().as_bytes());
                names.push(name);
            }
        }
        object.end();
        out.write_record(
            OutputRecord::new(Some(&bytes))
                .key(Some(key_text.as_bytes()))
                .timestamp(Some(timestamp)),
        )
    }
}

/// The comma-separated field names of config key `key`; `None` when unset.
fn field_list(config: &Config, key: &str) -> Result<Option<Vec<String>>, Error> {
    let Some(list) = config.get(key) else {
        return Ok(None);
    };
    let mut names: Vec<String> = Vec::new();
    for name in list.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(Error::new(format!(
                "{key}: `{list}` has an empty field name; list names separated by commas"
            )));
        }
        if names.iter().any(|n| n == name) {
            return Err(Error::new(format!("{key}: `{name}` is listed twice")));
        }
        names.push(name.to_string());
    }
    Ok(Some(names))
}

/// A join key's text: a string's value, or a number as written; `None` for other values.
fn key_text(raw: &RawValue) -> Option<String> {
    let text = raw.get();
    match text.as_bytes().first()? {
        b'"' => json::string_text(text).ok().map(|t| t.into_owned()),
        b'-' | b'0'..=b'9' => Some(text.to_string()),
        _ => None,
    }
}

fn encode(kept: &Kept) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(kept)
        .map_err(|e| Error::new(format!("state: cannot serialise a kept record: {e}")))
}

/// `J`, the side's tag, the key's length (2 bytes, big-endian) and the key: the length keeps a
/// key from running into the bytes after it, whatever bytes it holds.
fn key_prefix(side: Side, key: &[u8]) -> Result<Vec<u8>, Error> {
    let len = u16::try_from(key.len()).map_err(|_| {
        Error::new(format!(
            "a join key is at most 65535 bytes, not {}",
            key.len()
        ))
    })?;
    let mut prefix = Vec::with_capacity(4 + key.len() + 8 + SUFFIX_LEN);
    prefix.push(KEPT);
    prefix.push(side.tag());
    prefix.extend_from_slice(&len.to_be_bytes());
    prefix.extend_from_slice(key);
    Ok(prefix)
}

/// A kept record's state key: [`key_prefix`], its event time (so that a key's records sort by
/// time), then its partition and offset (so that records with equal times stay apart).
fn kept_key(
    side: Side,
    key: &[u8],
    time: i64,
    partition: i32,
    offset: i64,
) -> Result<Vec<u8>, Error> {
    let mut state_key = key_prefix(side, key)?;
    state_key.extend_from_slice(&sortable(time));
    state_key.extend_from_slice(&partition.to_be_bytes());
    state_key.extend_from_slice(&offset.to_be_bytes());
    Ok(state_key)
}

/// The parts of a state key made by [`kept_key`]; `None` for any other key.
fn decode_kept_key(state_key: &[u8]) -> Option<KeptKey> {
    let [KEPT, tag, len_hi, len_lo, rest @ ..] = state_key else {
        return None;
    };
    let side = Side::from_tag(*tag)?;
    let key_len = usize::from(u16::from_be_bytes([*len_hi, *len_lo]));
    if rest.len() != key_len + 8 + SUFFIX_LEN {
        return None;
    }
    let (key, rest) = rest.split_at(key_len);
    let time: [u8; 8] = rest[..8].try_into().ok()?;
    Some(KeptKey {
        side,
        key: key.to_vec(),
        time: (u64::from_be_bytes(time) ^ (1 << 63)) as i64,
    })
}

/// `time` big-endian with its sign bit flipped: byte order is time order, negatives included.
fn sortable(time: i64) -> [u8; 8] {
    ((time as u64) ^ (1 << 63)).to_be_bytes()
}

/// A state key and its value.
type StateEntry = (Vec<u8>, Vec<u8>);

/// The kept records of `side` with `key` and an event time in `[from, to]`, earliest first.
fn kept_between(side: Side, key: &[u8], from: i64, to: i64) -> Result<Vec<StateEntry>, Error> {
    let prefix = key_prefix(side, key)?;
    let mut start = [prefix.as_slice(), &sortable(from)].concat();
    // After every suffix that follows time `to`, which are all SUFFIX_LEN bytes long.
    let end = [prefix.as_slice(), &sortable(to), &[0xff; SUFFIX_LEN + 1]].concat();
    let mut entries = Vec::new();
    loop {
        let page = state::scan(&start, Some(&end), PAGE);
        let full = page.len() == PAGE as usize;
        if let Some((last, _)) = page.last() {
            start = last.clone();
            start.push(0);
        }
        entries.extend(page);
        if !full {
            return Ok(entries);
        }
    }
}

/// `"10s"`, `"1h"`, `"500ms"`, `"2m"`, `"7d"` in milliseconds.
fn parse_duration(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: i64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as \"10s\", \"5m\" or \"7d\""))?;
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

/// Epoch milliseconds of an RFC 3339 date, one in [`DATE_FORMAT`], or one without an offset
/// (read as UTC).
fn parse_time(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, DATE_FORMAT))
        .map(|t| t.timestamp_millis())
        .ok()
        .or_else(|| {
            NAIVE_DATE_FORMATS.iter().find_map(|format| {
                NaiveDateTime::parse_from_str(text, format)
                    .ok()
                    .map(|t| t.and_utc().timestamp_millis())
            })
        })
}

sluice_sdk::export_stateful!(StreamJoin);

#[cfg(test)]
mod tests;
