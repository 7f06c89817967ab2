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
  sluice try enricher.wasm --table customers=customers.jsonl -c table=customers -c key_field=customer_id < orders.jsonl

Each output value is printed on its own line, in input order. A failed record prints
`line N: <error>` on stderr. Exit status: 0 if every record succeeded, 1 if any failed,
2 if the module or its configuration was refused.";

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

/// Runs `sluice try`; returns the process's exit status.
pub fn run(args: TryArgs) -> anyhow::Result<i32> {
    let limits = Limits {
        memory_bytes: args.memory_mb as usize * 1024 * 1024,
        cpu_budget: Duration::from_millis(args.cpu_budget_ms),
    };
    let engine = Engine::new(limits)?;
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
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let max_bytes = args
        .batch_max_bytes
        .map_or(default_batch_max_bytes(args.memory_mb), |b| b as usize);
    let mut batch = InputBatchBuilder::new("try", 0);
    let mut lines = Vec::new(); // input line number of each record in the batch
    let mut failed = false;
    let mut run = |batch: &mut InputBatchBuilder, lines: &mut Vec<usize>| {
        flush(&mut instance, batch, lines, &mut out, args.envelope)
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
            failed = true;
            eprintln!(
                "line {}: {}: the record is {} bytes, more than a batch may hold (--batch-max-bytes {max_bytes})",
                number + 1,
                FailureKind::TooLarge,
                line.len()
            );
            continue;
        }
        batch.push(number as i64, None, None, Some(&line), []);
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
    batch.reset("try", 0);
    lines.clear();
    Ok(failed)
}
