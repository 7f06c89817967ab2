//! `sluice peek TOPIC`: look at what a topic holds, as a table, CSV or JSON lines (the way seed
//! 003 loads a topic into a dataframe). Partitions are assigned directly: no consumer group, no
//! commits, nothing left behind on the broker.

use crate::kafka::{TopicReader, Watermarks};
use anyhow::Context;
use clap::{Args, ValueEnum};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// Examples shown by `sluice peek --help`.
pub const EXAMPLES: &str = "\
Examples:
  sluice peek orders                                  # the first 20 records, as a table
  sluice peek unified_timestamps --from end -n 5      # the last 5
  sluice peek orders --partition 2 --from 1200 -n 50  # partition 2 from offset 1200
  sluice peek orders --from 2024-02-05T15:00:00Z      # from the first record at or after a time
  sluice peek orders -n 1000 --format csv > orders.csv
  sluice peek orders --format json | jq .value.price

JSON object values are flattened into columns for the table and CSV (nested keys joined with
`.`); other values fill a `value` column. JSON lines carry topic, partition, offset, timestamp
(ms), key and value (parsed if it is JSON, text otherwise). With several partitions, records
are shown in timestamp order. Peek stops at the end of the topic: it never waits for new records.";

/// Arguments of `sluice peek`.
#[derive(Debug, Args)]
pub struct PeekArgs {
    /// The topic to read.
    pub topic: String,
    /// Where Kafka is (localhost:9092 by default) and how to talk to it.
    #[command(flatten)]
    pub kafka: crate::kafka::ClientKafkaArgs,
    /// How many records to show.
    #[arg(short = 'n', long = "count", value_name = "N", default_value_t = 20)]
    pub count: usize,
    /// Where to start: `beginning`, `end` (the last N records), an offset, or an RFC 3339 time
    /// (the first record at or after it).
    #[arg(long, value_name = "WHERE", default_value = "beginning", value_parser = parse_from)]
    pub from: From,
    /// Read only this partition.
    #[arg(short, long, value_name = "N")]
    pub partition: Option<i32>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Give up waiting for the broker after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: u64,
}

/// Where reading starts, in every partition read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// The oldest record still held.
    Beginning,
    /// The last N records.
    End,
    /// This offset.
    Offset(i64),
    /// The first record whose timestamp is at or after this time, in ms since the epoch.
    Time(i64),
}

fn parse_from(s: &str) -> Result<From, String> {
    match s {
        "beginning" | "earliest" | "start" => Ok(From::Beginning),
        "end" | "latest" => Ok(From::End),
        _ => {
            if let Ok(offset) = s.parse::<i64>() {
                return if offset >= 0 {
                    Ok(From::Offset(offset))
                } else {
                    Err(format!("offset `{s}` is negative"))
                };
            }
            chrono::DateTime::parse_from_rfc3339(s).map(|t| From::Time(t.timestamp_millis())).map_err(|_| {
                format!(
                    "expected `beginning`, `end`, an offset or an RFC 3339 time like 2024-02-05T15:00:00Z; got `{s}`"
                )
            })
        }
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned table for people.
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON object per record.
    Json,
}

/// A record read from the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peeked {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp, in ms since the epoch.
    pub timestamp: Option<i64>,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub value: Option<Vec<u8>>,
}

/// Runs `sluice peek`; returns the exit status.
pub fn run(args: PeekArgs) -> anyhow::Result<i32> {
    let records = read(&args)?;
    if records.is_empty() {
        eprintln!(
            "no records in `{}` from {}",
            args.topic,
            describe(args.from)
        );
        return Ok(0);
    }
    let text = match args.format {
        Format::Table => {
            let (columns, rows) = tabulate(&records);
            table(&columns, &rows)
        }
        Format::Csv => {
            let (columns, rows) = tabulate(&records);
            csv(&columns, &rows)
        }
        Format::Json => json_lines(&args.topic, &records),
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth reporting.
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to standard output")
        }
        _ => Ok(0),
    }
}

fn describe(from: From) -> String {
    match from {
        From::Beginning => "the beginning".into(),
        From::End => "the end".into(),
        From::Offset(offset) => format!("offset {offset}"),
        From::Time(ms) => format_timestamp(ms),
    }
}

/// Reads up to `args.count` records from the topic, as `args.from` says.
pub fn read(args: &PeekArgs) -> anyhow::Result<Vec<Peeked>> {
    let topic = args.topic.as_str();
    let timeout = Duration::from_secs(args.timeout.max(1));
    let reader = TopicReader::new(
        &args.kafka.to_config()?,
        "sluice-peek",
        "sluice-peek",
        topic,
        timeout,
    )?;
    let mut partitions = reader.watermarks()?;
    if let Some(wanted) = args.partition {
        if !partitions.iter().any(|w| w.partition == wanted) {
            anyhow::bail!(
                "topic `{topic}` has no partition {wanted} (it has {}: 0 to {})",
                partitions.len(),
                partitions.len() - 1
            );
        }
        partitions.retain(|w| w.partition == wanted);
    }
    if args.count == 0 {
        return Ok(Vec::new());
    }

    // Per partition: where to start, and the end offset now (reading stops there).
    let n = args.count as i64;
    let mut starts_at_time = HashMap::new();
    if let From::Time(ms) = args.from {
        let mut times = TopicPartitionList::new();
        for w in &partitions {
            times.add_partition_offset(topic, w.partition, Offset::Offset(ms))?;
        }
        let found = reader
            .consumer()
            .offsets_for_times(times, timeout)
            .context("cannot look up offsets for the time")?;
        for element in found.elements() {
            starts_at_time.insert(element.partition(), element.offset());
        }
    }
    let ranges: Vec<(i32, i64, i64)> = partitions
        .iter()
        .map(
            |&Watermarks {
                 partition,
                 low,
                 high,
             }| {
                let start = match args.from {
                    From::Beginning => low,
                    From::End => (high - n).max(low),
                    From::Offset(offset) => offset.max(low),
                    From::Time(_) => match starts_at_time.get(&partition) {
                        Some(Offset::Offset(offset)) => (*offset).max(low),
                        // No record at or after the time.
                        _ => high,
                    },
                };
                (partition, start, high)
            },
        )
        .collect();
    let mut records = Vec::new();
    let mut read: HashMap<i32, usize> = HashMap::new();
    let finished = reader.read_ranges(&ranges, Instant::now() + timeout, |message| {
        records.push(Peeked {
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
        });
        let count = read.entry(message.partition()).or_default();
        *count += 1;
        // A partition needs at most N records: whichever N are shown, they are among them.
        *count < args.count
    })?;
    if !finished {
        eprintln!(
            "warning: stopped waiting for {topic} after {} s; showing what was read",
            timeout.as_secs()
        );
    }
    Ok(select(records, args.count, args.from == From::End))
}

/// The `count` records to show, in order: by offset for one partition, by timestamp across
/// several; the last ones when reading from the end.
pub fn select(mut records: Vec<Peeked>, count: usize, from_end: bool) -> Vec<Peeked> {
    let one_partition = records.windows(2).all(|w| w[0].partition == w[1].partition);
    if one_partition {
        records.sort_by_key(|r| r.offset);
    } else {
        records.sort_by_key(|r| (r.timestamp.unwrap_or(i64::MIN), r.partition, r.offset));
    }
    if from_end {
        let skip = records.len().saturating_sub(count);
        records.drain(..skip);
    } else {
        records.truncate(count);
    }
    records
}

/// `2024-02-05T15:01:52.884Z`.
pub fn format_timestamp(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => ms.to_string(),
    }
}

/// The columns every row starts with.
const META_COLUMNS: [&str; 4] = ["partition", "offset", "timestamp", "key"];

/// Columns and rows for the table and CSV: the record's metadata, then its value flattened (a
/// JSON object's fields, nested keys joined with `.`, in the order they first appear), or a
/// `value` column for anything else.
pub fn tabulate(records: &[Peeked]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut columns: Vec<String> = META_COLUMNS.iter().map(|c| c.to_string()).collect();
    let mut index: HashMap<String, usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), i))
        .collect();
    let mut cells_per_record = Vec::with_capacity(records.len());
    for record in records {
        let mut cells = vec![
            record.partition.to_string(),
            record.offset.to_string(),
            record.timestamp.map(format_timestamp).unwrap_or_default(),
            record
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default(),
        ];
        let fields = record
            .value
            .as_deref()
            .map(flatten_value)
            .unwrap_or_default();
        let mut extra = Vec::new();
        for (name, cell) in fields {
            // A field called `offset` must not overwrite the record's offset.
            let name = if META_COLUMNS.contains(&name.as_str()) {
                format!("value.{name}")
            } else {
                name
            };
            let column = *index.entry(name.clone()).or_insert_with(|| {
                columns.push(name);
                columns.len() - 1
            });
            extra.push((column, cell));
        }
        cells.resize(columns.len(), String::new());
        for (column, cell) in extra {
            cells[column] = cell;
        }
        cells_per_record.push(cells);
    }
    for cells in &mut cells_per_record {
        cells.resize(columns.len(), String::new());
    }
    (columns, cells_per_record)
}

/// A value's cells: a JSON object flattened to `(dotted name, text)` in field order (numbers
/// keep their exact text, strings lose their quotes, null is empty); anything else is one
/// `value` cell.
pub fn flatten_value(value: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(value);
    let mut cells = Vec::new();
    match serde_json::from_str::<&RawValue>(&text) {
        Ok(raw) if raw.get().trim_start().starts_with('{') => flatten_into("", raw, &mut cells),
        Ok(raw) => cells.push(("value".into(), cell_text(raw))),
        Err(_) => cells.push(("value".into(), text.into_owned())),
    }
    cells
}

fn flatten_into(prefix: &str, raw: &RawValue, cells: &mut Vec<(String, String)>) {
    let name = |key: &str| {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        }
    };
    let Ok(Fields(fields)) = serde_json::from_str::<Fields<'_>>(raw.get()) else {
        cells.push((prefix.to_string(), compact_json(raw.get())));
        return;
    };
    if fields.is_empty() && !prefix.is_empty() {
        cells.push((prefix.to_string(), "{}".into()));
    }
    for (key, value) in fields {
        if value.get().trim_start().starts_with('{') {
            flatten_into(&name(&key), value, cells);
        } else {
            cells.push((name(&key), cell_text(value)));
        }
    }
}

/// A JSON object's fields in document order, values unparsed.
struct Fields<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Fields<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Fields<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Fields<'a>, M::Error> {
                let mut fields = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
                    fields.push((key, value));
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// A JSON scalar or array as a cell: strings unquoted, null empty, the rest as compact JSON.
fn cell_text(raw: &RawValue) -> String {
    let text = raw.get().trim();
    if text.starts_with('"') {
        serde_json::from_str::<String>(text).unwrap_or_else(|_| text.to_string())
    } else if text == "null" {
        String::new()
    } else {
        compact_json(text)
    }
}

/// Valid JSON without the whitespace between tokens; numbers and strings keep their exact text.
pub fn compact_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

/// The widest a table column gets; longer cells are cut with `…` (CSV and JSON keep them whole).
const MAX_COLUMN_WIDTH: usize = 40;

/// An aligned table: a header, a rule, then one line per row.
pub fn table(columns: &[String], rows: &[Vec<String>]) -> String {
    let fit = |cell: &str| -> String {
        // Control characters would break the alignment; show them escaped.
        let visible: String = cell
            .chars()
            .flat_map(|c| {
                if c.is_control() {
                    c.escape_default().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect();
        if visible.chars().count() > MAX_COLUMN_WIDTH {
            visible
                .chars()
                .take(MAX_COLUMN_WIDTH - 1)
                .chain(['…'])
                .collect()
        } else {
            visible
        }
    };
    let header: Vec<String> = columns.iter().map(|c| fit(c)).collect();
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|c| fit(c)).collect())
        .collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            body.iter()
                .map(|row| row[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| -> String {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', widths[i] - cell.chars().count()));
        }
        line.truncate(line.trim_end().len());
        line.push('\n');
        line
    };
    let mut out = line(&header);
    out.push_str(&line(
        &widths.iter().map(|&w| "-".repeat(w)).collect::<Vec<_>>(),
    ));
    for row in &body {
        out.push_str(&line(row));
    }
    out
}

/// CSV (RFC 4180): a header line, then one line per row; fields quoted when they need it.
pub fn csv(columns: &[String], rows: &[Vec<String>]) -> String {
    let field = |cell: &str| -> String {
        if cell.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", cell.replace('"', "\"\""))
        } else {
            cell.to_string()
        }
    };
    let mut out = String::new();
    for row in std::iter::once(columns).chain(rows.iter().map(Vec::as_slice)) {
        out.push_str(&row.iter().map(|c| field(c)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

/// One JSON object per record: topic, partition, offset, timestamp (ms), key (text) and value
/// (the JSON itself when it is JSON, else text).
pub fn json_lines(topic: &str, records: &[Peeked]) -> String {
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Value {
        Json(Box<RawValue>),
        Text(String),
    }
    #[derive(Serialize)]
    struct Line<'a> {
        topic: &'a str,
        partition: i32,
        offset: i64,
        timestamp: Option<i64>,
        key: Option<String>,
        value: Option<Value>,
    }
    let mut out = String::new();
    for record in records {
        let value = record.value.as_deref().map(|bytes| {
            let text = String::from_utf8_lossy(bytes);
            match serde_json::from_str::<&RawValue>(&text) {
                // Compacted so that a pretty-printed value stays on its line.
                Ok(raw) => RawValue::from_string(compact_json(raw.get()))
                    .map(Value::Json)
                    .unwrap_or(Value::Text(text.into_owned())),
                Err(_) => Value::Text(text.into_owned()),
            }
        });
        let line = Line {
            topic,
            partition: record.partition,
            offset: record.offset,
            timestamp: record.timestamp,
            key: record
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            value,
        };
        out.push_str(&serde_json::to_string(&line).unwrap_or_default());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        partition: i32,
        offset: i64,
        timestamp: i64,
        key: Option<&str>,
        value: &str,
    ) -> Peeked {
        Peeked {
            partition,
            offset,
            timestamp: Some(timestamp),
            key: key.map(|k| k.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
        }
    }

    fn strings(cells: &[(String, String)]) -> Vec<(&str, &str)> {
        cells
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect()
    }

    #[test]
    fn objects_flatten_in_field_order_with_exact_numbers() {
        let cells = flatten_value(
            br#"{"order_id": "13", "price": 50.50, "customer": {"name": "bill", "address": {"city": "Paris"}, "tags": ["a", 1]}, "note": null, "ok": true, "empty": {}}"#,
        );
        assert_eq!(
            strings(&cells),
            [
                ("order_id", "13"),
                ("price", "50.50"),
                ("customer.name", "bill"),
                ("customer.address.city", "Paris"),
                ("customer.tags", r#"["a",1]"#),
                ("note", ""),
                ("ok", "true"),
                ("empty", "{}"),
            ]
        );
    }

    #[test]
    fn other_values_fill_one_value_column() {
        assert_eq!(
            strings(&flatten_value(b"not json, just text")),
            [("value", "not json, just text")]
        );
        assert_eq!(strings(&flatten_value(b"[1, 2]")), [("value", "[1,2]")]);
        assert_eq!(
            strings(&flatten_value(br#""quoted""#)),
            [("value", "quoted")]
        );
        assert_eq!(strings(&flatten_value(b"42")), [("value", "42")]);
    }

    #[test]
    fn tabulate_unions_columns_and_keeps_metadata_apart() {
        let records = [
            record(
                0,
                7,
                1_707_145_312_884,
                Some("5"),
                r#"{"id": "5", "name": "fred"}"#,
            ),
            record(
                1,
                3,
                1_707_145_313_000,
                None,
                r#"{"id": "7", "age": 25, "offset": "x"}"#,
            ),
            record(1, 4, 1_707_145_314_000, None, "plain"),
        ];
        let (columns, rows) = tabulate(&records);
        assert_eq!(
            columns,
            [
                "partition",
                "offset",
                "timestamp",
                "key",
                "id",
                "name",
                "age",
                "value.offset",
                "value"
            ]
        );
        assert_eq!(
            rows[0],
            [
                "0",
                "7",
                "2024-02-05T15:01:52.884Z",
                "5",
                "5",
                "fred",
                "",
                "",
                ""
            ]
        );
        assert_eq!(
            rows[1],
            [
                "1",
                "3",
                "2024-02-05T15:01:53.000Z",
                "",
                "7",
                "",
                "25",
                "x",
                ""
            ]
        );
        assert_eq!(rows[2][8], "plain");
        assert!(rows.iter().all(|row| row.len() == columns.len()));
    }

    #[test]
    fn table_aligns_columns_and_cuts_long_cells() {
        let columns: Vec<String> = ["offset", "name", "note"].map(String::from).to_vec();
        let long = "x".repeat(60);
        let rows = vec![
            vec!["0".into(), "fred".into(), "a\nb".into()],
            vec!["10".into(), "Zoë".into(), long.clone()],
        ];
        let text = table(&columns, &rows);
        let expected = format!(
            "offset  name  note\n------  ----  {}\n0       fred  a\\nb\n10      Zoë   {}…\n",
            "-".repeat(40),
            "x".repeat(39)
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let columns: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let rows = vec![
            vec!["plain".into(), r#"say "hi", twice"#.into()],
            vec!["line\nbreak".into(), "".into()],
        ];
        assert_eq!(
            csv(&columns, &rows),
            "a,b\r\nplain,\"say \"\"hi\"\", twice\"\r\n\"line\nbreak\",\r\n"
        );
    }

    #[test]
    fn json_lines_embed_json_values_and_quote_the_rest() {
        let records = [
            record(
                2,
                5,
                1000,
                Some("k"),
                "{\n  \"price\": 15.00,\n  \"s\": \"a b\"\n}",
            ),
            Peeked {
                partition: 0,
                offset: 1,
                timestamp: None,
                key: None,
                value: Some(b"hello".to_vec()),
            },
            Peeked {
                partition: 0,
                offset: 2,
                timestamp: None,
                key: None,
                value: None,
            },
        ];
        assert_eq!(
            json_lines("t", &records),
            concat!(
                r#"{"topic":"t","partition":2,"offset":5,"timestamp":1000,"key":"k","value":{"price":15.00,"s":"a b"}}"#,
                "\n",
                r#"{"topic":"t","partition":0,"offset":1,"timestamp":null,"key":null,"value":"hello"}"#,
                "\n",
                r#"{"topic":"t","partition":0,"offset":2,"timestamp":null,"key":null,"value":null}"#,
                "\n"
            )
        );
    }

    #[test]
    fn from_parses_positions_and_times() {
        assert_eq!(parse_from("beginning"), Ok(From::Beginning));
        assert_eq!(parse_from("end"), Ok(From::End));
        assert_eq!(parse_from("42"), Ok(From::Offset(42)));
        assert_eq!(
            parse_from("2024-02-05T10:01:52.884-05:00"),
            Ok(From::Time(1_707_145_312_884))
        );
        assert!(parse_from("-1").unwrap_err().contains("negative"));
        assert!(parse_from("yesterday").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn select_merges_partitions_by_time_and_takes_the_right_end() {
        let records = vec![
            record(1, 0, 30, None, "c"),
            record(0, 0, 10, None, "a"),
            record(0, 1, 40, None, "d"),
            record(1, 1, 20, None, "b"),
        ];
        let values = |rs: Vec<Peeked>| {
            rs.into_iter()
                .map(|r| String::from_utf8(r.value.unwrap()).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(values(select(records.clone(), 3, false)), ["a", "b", "c"]);
        assert_eq!(values(select(records, 2, true)), ["c", "d"]);
        // One partition: offset order, whatever the timestamps say.
        let one = vec![record(0, 1, 5, None, "y"), record(0, 0, 9, None, "x")];
        assert_eq!(values(select(one, 5, false)), ["x", "y"]);
    }
}
