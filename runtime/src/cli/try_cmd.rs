//! `sluice try`: the transform author's inner loop, without Kafka.

use crate::config::default_batch_max_bytes;
use crate::engine::{Engine, FailureKind, InputBatchBuilder, Instance, Limits, OutputRef};
use crate::tables::Tables;
use anyhow::Context;
use clap::Args;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

/// Examples shown by `sluice try --help`.
pub const EXAMPLES: &str = "\
Examples:
  echo '{\"date\": \"2024-02-05 10:01:52.884548 -0500\", \"message\": \"0\"}' \\
    | sluice try target/wasm32-wasip2/release/tz_normaliser.wasm
  sluice try tz_normaliser.wasm --config unit=s --config output_field=ts --input logs.jsonl
  sluice try my_transform.wasm --envelope < sample.jsonl
  echo '{\"key\": \"42\", \"value\": null, \"headers\": [[\"h\", \"v\"]], \"timestamp\": 1700000000000}' \\
    | sluice try my_transform.wasm --envelope-in --envelope
  sluice try enricher.wasm --table customers=customers.jsonl -c table=customers -c key_field=customer_id < orders.jsonl

Each output value is printed on its own line, in input order. A failed record prints
`line N: <error>` on stderr. Exit status: 0 if every record succeeded, 1 if any failed,
2 if nothing could be tried (the module, its configuration, a table or the input file).

With --envelope-in each line is a whole record, in the shape --envelope prints: a JSON object
with any of `topic` (`try` by default), `key`, `value` (null: a tombstone), `headers` (a list of
[name, value] pairs, or an object) and `timestamp` (ms); bytes are text, or {\"hex\": \"...\"}.
So one transform's --envelope output can be the next one's input.

Compiled components are kept in $XDG_CACHE_HOME/sluice/compiled (~/.cache/sluice/compiled), so
trying the same .wasm again starts at once.";

/// Arguments of `sluice try`.
#[derive(Debug, Args)]
pub struct TryArgs {
    /// The transform component (`.wasm`) to run.
    pub module: PathBuf,
    /// A configuration entry for the transform's `init`, repeatable.
    #[arg(short, long = "config", value_name = "KEY=VALUE", value_parser = super::key_value)]
    pub config: Vec<(String, String)>,
    /// Read record values from this file, one per line, instead of standard input.
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// A lookup table for the transform: NAME=FILE, the file holding one JSON object per line
    /// with `key` and `value` (a null value deletes the key). Repeatable.
    #[arg(short, long = "table", value_name = "NAME=FILE", value_parser = super::key_value)]
    pub table: Vec<(String, String)>,
    /// Print each output as a JSON object with its topic, key, headers and value.
    #[arg(long)]
    pub envelope: bool,
    /// Read each line as a whole record (topic, key, value, headers, timestamp), in the shape
    /// --envelope prints, rather than as a value.
    #[arg(long)]
    pub envelope_in: bool,
    /// Records per call into the transform.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_size: u32,
    /// Most bytes per call into the transform; an eighth of --memory-mb by default. A longer
    /// line fails as `too_large`, as it would in a pipeline.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_max_bytes: Option<u64>,
    /// Memory cap of the instance, in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub memory_mb: u32,
    /// CPU budget per batch, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    pub cpu_budget_ms: u64,
}

/// Exit status when the module or its configuration is refused.
pub const EXIT_REFUSED: i32 = 2;

/// The topic of records without one.
const DEFAULT_TOPIC: &str = "try";

/// A record given whole (`--envelope-in`), in the shape `--envelope` prints.
#[derive(Debug, Default, PartialEq)]
struct Envelope {
    topic: Option<String>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp: Option<i64>,
}

impl Envelope {
    fn parse(line: &[u8]) -> Result<Envelope, String> {
        use crate::api::model::RecordBytes;
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Headers {
            Pairs(Vec<(String, Option<RecordBytes>)>),
            Object(std::collections::BTreeMap<String, Option<RecordBytes>>),
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Json {
            #[serde(default)]
            topic: Option<RecordBytes>,
            #[serde(default)]
            key: Option<RecordBytes>,
            #[serde(default)]
            value: Option<RecordBytes>,
            #[serde(default)]
            headers: Option<Headers>,
            #[serde(default)]
            timestamp: Option<i64>,
        }
        let json: Json = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        let bytes = |b: Option<RecordBytes>| b.map(|b| b.to_bytes()).transpose();
        let headers = match json.headers {
            None => Vec::new(),
            Some(Headers::Pairs(pairs)) => pairs,
            Some(Headers::Object(object)) => object.into_iter().collect(),
        };
        let topic = bytes(json.topic)?
            .map(|t| String::from_utf8(t).map_err(|_| "`topic` is not text".to_string()))
            .transpose()?;
        Ok(Envelope {
            topic,
            key: bytes(json.key)?,
            value: bytes(json.value)?,
            headers: (headers.into_iter())
                .map(|(name, value)| Ok((name, bytes(value)?)))
                .collect::<Result<_, String>>()?,
            timestamp: json.timestamp,
        })
    }
}

/// The user's cache folder: `$XDG_CACHE_HOME`, else `~/.cache`.
fn user_cache_dir() -> Option<PathBuf> {
    (std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from))
    .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
}

/// Runs `sluice try`; returns the process's exit status.
pub fn run(args: TryArgs) -> anyhow::Result<i32> {
    let limits = Limits {
        memory_bytes: args.memory_mb as usize * 1024 * 1024,
        cpu_budget: Duration::from_millis(args.cpu_budget_ms),
    };
    let mut engine = Engine::new(limits)?;
    // Kept between runs, as `sluice run` keeps them: a component with an interpreter inside
    // (Python, JavaScript) takes seconds to compile.
    if let Some(dir) = user_cache_dir() {
        engine = engine.with_compiled_cache(dir.join("sluice/compiled"));
    }
    let label = args
        .module
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let files: Vec<(String, PathBuf)> = args
        .table
        .iter()
        .map(|(name, file)| (name.clone(), PathBuf::from(file)))
        .collect();
    let tables = match Tables::from_files(&files, 1 << 30) {
        Ok(tables) => tables,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(EXIT_REFUSED);
        }
    };
    let loaded = std::fs::read(&args.module)
        .context("cannot read the file")
        .and_then(|bytes| Ok(engine.load(&bytes)?))
        .and_then(|module| Ok(engine.instantiate(&module, &label, &args.config, &tables)?));
    let mut instance = match loaded {
        Ok(instance) => instance,
        Err(e) => {
            eprintln!("error: {}: {e:#}", args.module.display());
            return Ok(EXIT_REFUSED);
        }
    };

    let input: Box<dyn BufRead> = match &args.input {
        Some(path) => match std::fs::File::open(path) {
            Ok(file) => Box::new(std::io::BufReader::new(file)),
            // Nothing was tried: not the exit status of a record that failed.
            Err(e) => {
                eprintln!("error: --input {}: {e}", path.display());
                return Ok(EXIT_REFUSED);
            }
        },
        None => Box::new(std::io::stdin().lock()),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let max_bytes = args
        .batch_max_bytes
        .map_or(default_batch_max_bytes(args.memory_mb), |b| b as usize);
    let mut batch = InputBatchBuilder::new(DEFAULT_TOPIC, 0);
    let mut topic = DEFAULT_TOPIC.to_string();
    let mut lines = Vec::new(); // input line number of each record in the batch
    let mut failed = false;
    let mut run = |batch: &mut InputBatchBuilder, lines: &mut Vec<usize>| {
        flush(&mut instance, batch, lines, &mut out, args.envelope)
    };
    let fail = |number: usize, message: &str| {
        eprintln!("line {}: {message}", number + 1);
        true
    };
    for (number, line) in input.split(b'\n').enumerate() {
        let mut line = line.context("cannot read input")?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // Batches are cut by bytes as they are in a pipeline.
        if batch.bytes() + line.len() > max_bytes {
            failed |= run(&mut batch, &mut lines)?;
        }
        if line.len() > max_bytes {
            failed |= fail(
                number,
                &format!(
                    "{}: the record is {} bytes, more than a batch may hold (--batch-max-bytes {max_bytes})",
                    FailureKind::TooLarge,
                    line.len()
                ),
            );
            continue;
        }
        if !args.envelope_in {
            batch.push(number as i64, None, None, Some(&line), []);
        } else {
            let record = match Envelope::parse(&line) {
                Ok(record) => record,
                Err(e) => {
                    failed |= fail(number, &format!("not a record envelope: {e}"));
                    continue;
                }
            };
            // A batch holds one topic's records.
            let record_topic = record.topic.as_deref().unwrap_or(DEFAULT_TOPIC);
            if record_topic != topic {
                failed |= run(&mut batch, &mut lines)?;
                topic = record_topic.to_string();
                batch.reset(&topic, 0);
            }
            let headers = (record.headers.iter()).map(|(k, v)| (k.as_str(), v.as_deref()));
            let (key, value) = (record.key.as_deref(), record.value.as_deref());
            batch.push(number as i64, record.timestamp, key, value, headers);
        }
        lines.push(number + 1);
        if batch.len() >= args.batch_size as usize {
            failed |= run(&mut batch, &mut lines)?;
        }
    }
    failed |= run(&mut batch, &mut lines)?;
    if instance.task().is_some() {
        // The end of the input: every timer fires, so every window closes and is printed.
        let closed = instance.finish()?;
        for o in closed.outputs() {
            print_output(&mut out, &o, args.envelope)?;
        }
        out.flush()?;
    }
    Ok(if failed { 1 } else { 0 })
}

/// Prints one output: its value, or with `envelope` the whole record as JSON.
fn print_output(out: &mut impl Write, o: &OutputRef<'_>, envelope: bool) -> anyhow::Result<()> {
    if envelope {
        serde_json::to_writer(&mut *out, &o.to_json())?;
    } else {
        out.write_all(o.value().unwrap_or_default())?;
    }
    out.write_all(b"\n")?;
    Ok(())
}

/// Runs the batch and prints its outputs and errors, flushed, so that what is printed next on
/// stderr comes after them; true if any record failed.
fn flush(
    instance: &mut Instance,
    batch: &mut InputBatchBuilder,
    lines: &mut Vec<usize>,
    out: &mut impl Write,
    envelope: bool,
) -> anyhow::Result<bool> {
    if batch.is_empty() {
        return Ok(false);
    }
    let processed = instance.process(batch.batch())?;
    let mut failures = processed.failures().iter().peekable();
    let mut outputs = processed.outputs().peekable();
    // Interleave by input so that stdout and stderr stay in input order.
    for (index, line) in lines.iter().enumerate() {
        while let Some(o) = outputs.next_if(|o| o.input() == index) {
            print_output(out, &o, envelope)?;
        }
        if let Some(f) = failures.next_if(|f| f.input == index) {
            out.flush()?;
            eprintln!("line {line}: {}", f.message);
        }
    }
    out.flush()?;
    let failed = !processed.failures().is_empty();
    let topic = batch.batch().topic.clone();
    batch.reset(&topic, 0);
    lines.clear();
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_is_the_shape_envelope_prints_with_every_field_optional() {
        let full = br#"{"topic": "orders", "key": "42", "value": {"hex": "ff00"}, "headers": [["h", "v"], ["empty", null]], "timestamp": 1700000000000}"#;
        assert_eq!(
            Envelope::parse(full),
            Ok(Envelope {
                topic: Some("orders".into()),
                key: Some(b"42".to_vec()),
                value: Some(vec![0xff, 0]),
                headers: vec![("h".into(), Some(b"v".to_vec())), ("empty".into(), None)],
                timestamp: Some(1_700_000_000_000),
            })
        );
        // A tombstone, headers as an object.
        let tombstone = br#"{"key": "42", "value": null, "headers": {"a": "1"}}"#;
        let parsed = Envelope::parse(tombstone).unwrap();
        assert_eq!(
            (parsed.value, parsed.headers),
            (None, vec![("a".into(), Some(b"1".to_vec()))])
        );
        assert_eq!(Envelope::parse(b"{}"), Ok(Envelope::default()));
        let wrong = Envelope::parse(br#"{"vaule": "x"}"#).unwrap_err();
        assert!(wrong.contains("unknown field `vaule`"), "{wrong}");
        assert!(Envelope::parse(br#"{"key": {"hex": "zz"}}"#).is_err());
    }
}
