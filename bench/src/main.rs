//! `make bench`: measures, in one run, the figures the README publishes.
//!
//! (a) Boundary cost: a no-op transform (copies each value) over 100-byte records at batch sizes
//!     1, 64 and 1024, in ns per record.
//! (b) The tz normaliser as a Wasm component against the same transform compiled natively, run
//!     through the same SDK batch code (encode, process, write outputs), records/s and the
//!     ratio; and against the bare per-record function, which skips all batch framing.
//!
//! (c) With a broker (`SLUICE_TEST_KAFKA`, as `make bench` provides): end to end on Kafka, see
//!     [`e2e`].
//!
//! Rounds of each measurement are interleaved and the median is reported, so that drift on a
//! shared machine hits both sides of a ratio alike.

mod e2e;

use anyhow::Result;
use sluice::engine::{Engine, InputBatchBuilder, Instance, Limits};
use sluice_sdk::{Config, Record};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;

fn wasm(name: &str) -> Result<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../target/wasm32-wasip2/release/{name}.wasm"));
    std::fs::read(&path).map_err(|e| anyhow::anyhow!("{}: {e} (run `make wasm`)", path.display()))
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

/// Runs `records` through `instance` in batches of `batch_size`; returns elapsed time.
fn run_wasm(instance: &mut Instance, records: &[Vec<u8>], batch_size: usize) -> Result<Duration> {
    let mut batch = InputBatchBuilder::new("bench", 0);
    let started = Instant::now();
    let mut outputs = 0;
    for chunk in records.chunks(batch_size) {
        batch.reset("bench", 0);
        for (i, value) in chunk.iter().enumerate() {
            batch.push(i as i64, Some(0), None, Some(value), []);
        }
        let processed = instance.process(batch.batch())?;
        anyhow::ensure!(processed.failures().is_empty(), "failures: {:?}", &processed.failures()[..1]);
        outputs += processed.outputs().count();
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(outputs == records.len(), "{outputs} outputs for {} records", records.len());
    Ok(elapsed)
}

fn seed_records(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let (hour, offset) = if i % 2 == 0 { (10, "-0500") } else { (16, "+0100") };
            format!(
                r#"{{"date": "2024-02-05 {hour}:{:02}:{:02}.{:06} {offset}", "message": "{i}"}}"#,
                i / 60 % 60,
                i % 60,
                i * 7919 % 1_000_000
            )
            .into_bytes()
        })
        .collect()
}

fn main() -> Result<()> {
    let engine = Engine::new(Limits::default())?;
    println!("Sluice engine benchmarks ({} rounds each, median)", ROUNDS);

    // (a) Boundary cost.
    let noop = engine.load(&wasm("test_guest")?)?;
    let mut instance = engine.instantiate(&noop, "noop", &[], &Default::default())?;
    let records: Vec<Vec<u8>> = (0..100_000).map(|i| format!("{i:0100}").into_bytes()).collect();
    println!("\n(a) no-op transform, 100-byte records");
    let mut boundary = serde_json::Map::new();
    for batch_size in [1usize, 64, 1024] {
        let n = if batch_size == 1 { 20_000 } else { records.len() };
        run_wasm(&mut instance, &records[..n.min(2_000)], batch_size)?; // warm-up
        let samples = (0..ROUNDS)
            .map(|_| run_wasm(&mut instance, &records[..n], batch_size).map(|d| d.as_nanos() as f64 / n as f64))
            .collect::<Result<Vec<_>>>()?;
        let ns = median(samples);
        println!("    batch {batch_size:>5}: {ns:>8.1} ns/record");
        boundary.insert(format!("batch_{batch_size}_ns_per_record"), ns.into());
    }

    // (b) tz normaliser, Wasm against native.
    let tz = engine.load(&wasm("tz_normaliser")?)?;
    let mut instance = engine.instantiate(&tz, "tz", &[], &Default::default())?;
    let native = tz_normaliser::Normaliser::from_config(&Config::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let records = seed_records(200_000);
    let run_native = |records: &[Vec<u8>]| -> Result<Duration> {
        let mut out = Vec::with_capacity(128);
        let started = Instant::now();
        for value in records {
            out.clear();
            native.normalise_value(value, &mut out).map_err(|e| anyhow::anyhow!("{e}"))?;
            std::hint::black_box(&out);
        }
        Ok(started.elapsed())
    };
    let run_native_batches = |records: &[Vec<u8>]| -> Result<Duration> {
        let mut transform = sluice_sdk::testing::init::<tz_normaliser::TzNormaliser>(&[]).map_err(|e| anyhow::anyhow!("{e}"))?;
        let started = Instant::now();
        for chunk in records.chunks(1024) {
            let chunk: Vec<Record<'_>> = chunk.iter().map(|v| Record::from_value(v)).collect();
            let (outputs, errors) = sluice_sdk::testing::NativeBatch::new(&chunk).run(&mut transform);
            anyhow::ensure!(outputs == chunk.len() && errors == 0, "native batch failed");
        }
        Ok(started.elapsed())
    };
    run_native(&records[..10_000])?;
    run_native_batches(&records[..10_000])?;
    run_wasm(&mut instance, &records[..10_000], 1024)?;
    let (mut wasm_rates, mut native_rates, mut function_rates) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let n = records.len() as f64;
        wasm_rates.push(n / run_wasm(&mut instance, &records, 1024)?.as_secs_f64());
        native_rates.push(n / run_native_batches(&records)?.as_secs_f64());
        function_rates.push(n / run_native(&records)?.as_secs_f64());
    }
    let (wasm_rate, native_rate, function_rate) = (median(wasm_rates), median(native_rates), median(function_rates));
    println!("\n(b) tz normaliser, seed-000 records, batch 1024");
    println!("    native, same SDK batch path: {native_rate:>12.0} records/s");
    println!("    native, bare function:       {function_rate:>12.0} records/s");
    println!("    wasm component:              {wasm_rate:>12.0} records/s");
    println!("    wasm / native (SDK batch path): {:.2}", wasm_rate / native_rate);
    println!("    wasm / native (bare function):  {:.2}", wasm_rate / function_rate);

    let results = serde_json::json!({
        "boundary": boundary,
        "tz_normaliser": {
            "native_sdk_records_per_s": native_rate.round(),
            "native_function_records_per_s": function_rate.round(),
            "wasm_records_per_s": wasm_rate.round(),
            "wasm_to_native_sdk": (wasm_rate / native_rate * 100.0).round() / 100.0,
            "wasm_to_native_function": (wasm_rate / function_rate * 100.0).round() / 100.0,
        },
    });
    let mut results = results;
    match std::env::var("SLUICE_TEST_KAFKA") {
        Ok(bootstrap) => {
            let n = std::env::var("SLUICE_BENCH_RECORDS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
            results["kafka"] = e2e::run(&bootstrap, &engine, n)?;
        }
        Err(_) => println!("\n(c) skipped: no broker (SLUICE_TEST_KAFKA); `make bench` starts one"),
    }
    println!("\n{}", serde_json::to_string(&results)?);
    Ok(())
}
