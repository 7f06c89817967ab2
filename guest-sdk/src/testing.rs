//! Run a transform natively in unit tests, through the same batch encoding the runtime uses.
//!
//! ```
//! # use sluice_sdk::{Config, Error, Record, Transform, Writer};
//! struct Echo;
//! impl Transform for Echo {
//!     fn init(_: &Config) -> Result<Self, Error> { Ok(Echo) }
//!     fn process(&mut self, r: &Record<'_>, out: &mut Writer<'_>) -> Result<(), Error> {
//!         out.write(r.value.unwrap_or_default())
//!     }
//! }
//! let mut echo = sluice_sdk::testing::init::<Echo>(&[]).unwrap();
//! let out = sluice_sdk::testing::process(&mut echo, &Record::from_value(b"hi")).unwrap();
//! assert_eq!(out[0].value.as_deref(), Some(&b"hi"[..]));
//! ```

use crate::columns::{self, encode, span_at};
use crate::state::Timer;
use crate::wit::columnar::{InputColumns, OutputColumns};
use crate::wit::types::Span;
use crate::{Config, Error, Record, StatefulTransform, Transform};

/// Fake tables of this test thread: name, then key to value.
type FakeTables = std::collections::HashMap<String, std::collections::HashMap<Vec<u8>, Vec<u8>>>;

thread_local! {
    static TABLES: std::cell::RefCell<FakeTables> = Default::default();
}

/// Declares table `table` for this test thread (empty if it was not declared yet) and sets `key`
/// to `value` in it; `None` deletes the key, as a tombstone does.
pub fn set_table(table: &str, key: &[u8], value: Option<&[u8]>) {
    TABLES.with(|tables| {
        let mut tables = tables.borrow_mut();
        let entries = tables.entry(table.to_string()).or_default();
        match value {
            Some(value) => entries.insert(key.to_vec(), value.to_vec()),
            None => entries.remove(key),
        };
    });
}

/// Forgets every table of this test thread.
pub fn clear_tables() {
    TABLES.with(|tables| tables.borrow_mut().clear());
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn fake_lookup(table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
    TABLES.with(|tables| match tables.borrow().get(table) {
        Some(entries) => Ok(entries.get(key).cloned()),
        None => Err(format!("this pipeline declares no table named `{table}`")),
    })
}

/// Forgets the state, timers and stream time of this test thread.
pub fn reset_state() {
    crate::state::native::with(|s| *s = Default::default());
}

/// Moves stream time up to `time` and fires the timers at or before it, as the runtime does
/// after a batch: per timer, in time order, the timer and its outputs or its error.
pub fn advance<T: StatefulTransform>(
    transform: &mut T,
    time: i64,
) -> Vec<(Timer, Result<Vec<Output>, Error>)> {
    let mut fired = Vec::new();
    loop {
        let due = crate::state::native::with(|s| {
            s.advance(time);
            s.take_due()
        });
        if due.is_empty() {
            return fired;
        }
        let output = crate::guest::on_timers_with(transform, &due);
        let results = decode(due.len(), output);
        fired.extend(due.into_iter().zip(results));
    }
}

/// An output as a test sees it: owned, with spans resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The topic it is routed to; `None` for the pipeline's default output.
    pub topic: Option<String>,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub value: Option<Vec<u8>>,
    /// Its headers, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Its timestamp.
    pub timestamp: Option<i64>,
}

impl Output {
    /// The value as UTF-8 text, if it is.
    pub fn value_str(&self) -> Option<&str> {
        self.value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The value parsed as JSON; panics if it is not, as a test assertion would.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.value.as_deref().expect("output has a value"))
            .expect("output value is JSON")
    }
}

/// Builds a transform from configuration pairs, as the runtime's `init` would.
pub fn init<T: Transform>(config: &[(&str, &str)]) -> Result<T, Error> {
    T::init(&Config::new(config.iter().copied()))
}

/// Runs one record through the transform: its outputs, or its error.
pub fn process<T: Transform>(transform: &mut T, record: &Record<'_>) -> Result<Vec<Output>, Error> {
    process_batch(transform, std::slice::from_ref(record))
        .pop()
        .expect("one result per record")
}

/// Runs records through the transform as one batch (with the first record's topic and
/// partition): per record, its outputs or its error.
pub fn process_batch<T: Transform>(
    transform: &mut T,
    records: &[Record<'_>],
) -> Vec<Result<Vec<Output>, Error>> {
    let batch = encode(records);
    let output = crate::guest::process_with(transform, &batch);
    decode(records.len(), output)
}

/// A batch run natively through exactly the code a component runs (the SDK's batch decoding,
/// the transform, the output encoding): the native reference for benchmarks.
pub struct NativeBatch {
    batch: InputColumns,
}

impl NativeBatch {
    /// Encodes `records` as one batch.
    pub fn new(records: &[Record<'_>]) -> Self {
        NativeBatch {
            batch: encode(records),
        }
    }

    /// Runs the transform over the batch; returns how many outputs and errors it produced.
    pub fn run<T: Transform>(&self, transform: &mut T) -> (usize, usize) {
        let output = crate::guest::process_with(transform, &self.batch);
        (output.inputs.len(), output.errors.len())
    }
}

fn decode(inputs: usize, batch: OutputColumns) -> Vec<Result<Vec<Output>, Error>> {
    let bytes = |span: Option<Span>| span.map(|s| columns::bytes(&batch.data, s).to_vec());
    let text = |span: Option<Span>| {
        bytes(span).map(|b| String::from_utf8(b).expect("SDK writes UTF-8 names and topics"))
    };
    let mut results: Vec<Result<Vec<Output>, Error>> =
        (0..inputs).map(|_| Ok(Vec::new())).collect();
    for (o, &input) in batch.inputs.iter().enumerate() {
        let first = batch.header_ranges[2 * o] as usize;
        let count = batch.header_ranges[2 * o + 1] as usize;
        let output = Output {
            topic: text(span_at(&batch.topics, o)),
            key: bytes(span_at(&batch.keys, o)),
            value: bytes(span_at(&batch.values, o)),
            headers: (first..first + count)
                .map(|h| {
                    let name = text(span_at(&batch.headers, 2 * h)).expect("headers have names");
                    (name, bytes(span_at(&batch.headers, 2 * h + 1)))
                })
                .collect(),
            timestamp: columns::timestamp(batch.timestamps[o]),
        };
        results[input as usize]
            .as_mut()
            .expect("no outputs for a failed record")
            .push(output);
    }
    for e in batch.errors {
        results[e.input as usize] = Err(Error::new(e.message));
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Header, OutputRecord, Writer};

    /// Exercises every writer path: plain, routed, JSON, explicit record, filter and error.
    struct Router;

    impl Transform for Router {
        fn init(config: &Config) -> Result<Self, Error> {
            config.allow_only(&[])?;
            Ok(Router)
        }

        fn process(&mut self, r: &Record<'_>, out: &mut Writer<'_>) -> Result<(), Error> {
            match r.value_str()? {
                "drop" => Ok(()),
                "fail" => {
                    out.write("partial output, discarded on error")?;
                    Err(Error::new("failed on purpose"))
                }
                "route" => out.write_to("other", "routed"),
                "json" => out.write_json(&serde_json::json!({"offset": r.offset})),
                "twice" => {
                    out.write("one")?;
                    out.write("two")
                }
                "custom" => out.write_record(
                    OutputRecord::new(None)
                        .key(Some(b"k2"))
                        .timestamp(None)
                        .without_input_headers()
                        .header("h", Some(b"v")),
                ),
                other => out.write(other),
            }
        }
    }

    #[test]
    fn every_writer_path_round_trips_through_the_batch_encoding() {
        let mut t = init::<Router>(&[]).unwrap();
        let headers = [
            Header {
                name: "trace",
                value: Some(b"abc"),
            },
            Header {
                name: "null",
                value: None,
            },
        ];
        let base = Record {
            topic: "in",
            partition: 2,
            offset: 7,
            timestamp: Some(1_000),
            key: Some(b"key"),
            value: None,
            headers: &headers,
        };
        let values: [&[u8]; 7] = [
            b"plain", b"drop", b"fail", b"route", b"json", b"twice", b"custom",
        ];
        let records: Vec<Record<'_>> = values
            .iter()
            .map(|v| Record {
                value: Some(v),
                ..base
            })
            .collect();
        let results = process_batch(&mut t, &records);

        let plain = &results[0].as_ref().unwrap()[0];
        assert_eq!(plain.value_str(), Some("plain"));
        assert_eq!(plain.key.as_deref(), Some(&b"key"[..]));
        assert_eq!(plain.timestamp, Some(1_000));
        assert_eq!(plain.topic, None);
        assert_eq!(
            plain.headers,
            vec![
                ("trace".to_string(), Some(b"abc".to_vec())),
                ("null".to_string(), None)
            ]
        );
        assert_eq!(results[1], Ok(vec![]));
        assert_eq!(results[2], Err(Error::new("failed on purpose")));
        assert_eq!(
            results[3].as_ref().unwrap()[0].topic.as_deref(),
            Some("other")
        );
        assert_eq!(
            results[4].as_ref().unwrap()[0].json(),
            serde_json::json!({"offset": 7})
        );
        let twice: Vec<_> = results[5]
            .as_ref()
            .unwrap()
            .iter()
            .map(|o| o.value_str().unwrap())
            .collect();
        assert_eq!(twice, ["one", "two"]);
        let custom = &results[6].as_ref().unwrap()[0];
        assert_eq!(custom.value, None);
        assert_eq!(custom.key.as_deref(), Some(&b"k2"[..]));
        assert_eq!(custom.timestamp, None);
        assert_eq!(custom.headers, vec![("h".to_string(), Some(b"v".to_vec()))]);
    }

    #[test]
    fn fake_tables_behave_like_the_hosts() {
        set_table("customers", b"1", Some(br#"{"name":"ada"}"#));
        assert_eq!(
            crate::tables::lookup("customers", b"1").unwrap().as_deref(),
            Some(&br#"{"name":"ada"}"#[..])
        );
        let value: serde_json::Value = crate::tables::lookup_json("customers", b"1")
            .unwrap()
            .unwrap();
        assert_eq!(value["name"], "ada");
        assert_eq!(crate::tables::lookup("customers", b"2").unwrap(), None);
        set_table("customers", b"1", None);
        assert_eq!(crate::tables::lookup("customers", b"1").unwrap(), None);
        assert_eq!(
            crate::tables::lookup("orders", b"1").unwrap_err().message(),
            "this pipeline declares no table named `orders`"
        );
        clear_tables();
        assert!(crate::tables::lookup("customers", b"1").is_err());
    }

    #[test]
    fn bad_values_are_per_record_errors_not_panics() {
        let mut t = init::<Router>(&[]).unwrap();
        let tombstone = Record::default();
        assert_eq!(
            process(&mut t, &tombstone),
            Err(Error::new("record has no value"))
        );
        let invalid = Record::from_value(&[0xff, 0xfe]);
        assert!(
            process(&mut t, &invalid)
                .unwrap_err()
                .message()
                .starts_with("value is not UTF-8")
        );
        assert_eq!(
            init::<Router>(&[("x", "1")]).err(),
            Some(Error::new("unknown config key `x`; known keys: "))
        );
    }
}
