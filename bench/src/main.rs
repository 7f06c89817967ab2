//! `make bench`: measures, in one run, the figures the README publishes.
//!
//! (a) Boundary cost: a no-op transform (copies each value) over 100-byte records at batch sizes
//!     1, 64 and 1024, in ns per record.
//! (b) Each shipped transform as a Wasm component against the same transform compiled natively,
//!     run through the same SDK batch code (decode, process, write outputs), records/s and the
//!     ratio; the tz normaliser also against its bare per-record function, which skips all batch
//!     framing. Then chains of one, two and three shipped transforms in process. Then the PII
//!     stripper's e-mail masking as a component written in Rust, Python and TypeScript.
//!
//! (c) With a broker (`SLUICE_TEST_KAFKA`, as `make bench` provides): end to end on Kafka, see
//!     [`e2e`].
//! (d) `sluice demo`'s resident memory once it runs steadily.
//!
//! The figures with a target are printed last with met or missed, and kept with all the others
//! in `bench/results/latest.json` (see [`report`]).
//!
//! `sluice-bench fleet` (`make bench-fleet`) measures fleets of 1, 2 and 3 `sluice run`
//! processes instead: see [`fleet`].
//!
//! Rounds of each measurement are interleaved and the median is reported, so that drift on a
//! shared machine hits both sides of a ratio alike.

mod e2e;
mod fleet;
mod report;

use anyhow::Result;
use sluice::engine::{Engine, InputBatchBuilder, Instance, InstantiateError, Limits};
use sluice::pipeline::chain::{Chain, Deployed, StageSpec};
use sluice::tables::{Table, Tables};
use sluice_sdk::{Config, Record, Transform};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;

/// Where the transforms built for wasm32-wasip2 are: `SLUICE_WASM_DIR`, or the build's own.
pub fn wasm_dir() -> PathBuf {
    std::env::var_os("SLUICE_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release")
        })
}

/// Whether the section `name` is to run: all of them unless `SLUICE_BENCH_ONLY` lists some
/// (comma-separated: boundary, transforms, polyglot, demo, kafka, startup, windowed, restore,
/// latency, eos-latency).
pub fn selected(name: &str) -> bool {
    std::env::var("SLUICE_BENCH_ONLY")
        .map(|only| only.split(',').any(|s| s.trim() == name))
        .unwrap_or(true)
}

fn wasm(name: &str) -> Result<Vec<u8>> {
    let path = wasm_dir().join(format!("{name}.wasm"));
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
        anyhow::ensure!(
            processed.failures().is_empty(),
            "failures: {:?}",
            &processed.failures()[..1]
        );
        outputs += processed.outputs().count();
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(
        outputs == records.len(),
        "{outputs} outputs for {} records",
        records.len()
    );
    Ok(elapsed)
}

/// Seed-004 style orders, a third of them with an email and a phone number to strip.
fn order_records(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let contact = match i % 3 {
                0 => format!(r#","email":"customer{i}@example.com","phone":"+1 555 123 {:04}""#, i % 10_000),
                _ => String::new(),
            };
            format!(
                r#"{{"customer_id":"{}","order_id":"{i}","price":{}.{:02},"currency":"usd","ts":"2020-04-03T11:20:00"{contact}}}"#,
                i % 1200,
                i % 90,
                i % 100
            )
            .into_bytes()
        })
        .collect()
}

/// A transform's logic called directly, without the SDK: how long it takes over the records.
type BareFunction<'a> = &'a dyn Fn(&[Vec<u8>]) -> Result<Duration>;

/// Runs `records` through transform `T` as the Wasm component `name` and natively through the
/// same SDK batch code, interleaved; prints and returns records/s and the ratio.
fn compare<T: Transform>(
    engine: &Engine,
    name: &str,
    config: &[(&str, &str)],
    tables: &Tables,
    records: &[Vec<u8>],
    bare_function: Option<BareFunction<'_>>,
) -> Result<serde_json::Value> {
    let owned: Vec<(String, String)> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let module = engine.load(&wasm(name)?)?;
    let mut instance = engine.instantiate(&module, name, &owned, tables)?;
    let run_native = |records: &[Vec<u8>]| -> Result<Duration> {
        let mut transform =
            sluice_sdk::testing::init::<T>(config).map_err(|e| anyhow::anyhow!("{e}"))?;
        let started = Instant::now();
        for chunk in records.chunks(1024) {
            let chunk: Vec<Record<'_>> = chunk.iter().map(|v| Record::from_value(v)).collect();
            let (outputs, errors) =
                sluice_sdk::testing::NativeBatch::new(&chunk).run(&mut transform);
            anyhow::ensure!(
                outputs == chunk.len() && errors == 0,
                "{name}: native batch failed"
            );
        }
        Ok(started.elapsed())
    };
    run_native(&records[..10_000])?;
    run_wasm(&mut instance, &records[..10_000], 1024)?;
    let n = records.len() as f64;
    let (mut wasm_rates, mut native_rates, mut function_rates) =
        (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        wasm_rates.push(n / run_wasm(&mut instance, records, 1024)?.as_secs_f64());
        native_rates.push(n / run_native(records)?.as_secs_f64());
        if let Some(function) = bare_function {
            function_rates.push(n / function(records)?.as_secs_f64());
        }
    }
    let (wasm_rate, native_rate) = (median(wasm_rates), median(native_rates));
    println!(
        "    {name:<14} native {native_rate:>10.0} records/s, wasm {wasm_rate:>10.0} records/s, wasm / native {:.2}",
        wasm_rate / native_rate
    );
    let mut result = serde_json::json!({
        "native_records_per_s": native_rate.round(),
        "wasm_records_per_s": wasm_rate.round(),
        "wasm_to_native": (wasm_rate / native_rate * 100.0).round() / 100.0,
    });
    if !function_rates.is_empty() {
        let function_rate = median(function_rates);
        println!(
            "    {:<14} bare native function {function_rate:>10.0} records/s, wasm / function {:.2}",
            "",
            wasm_rate / function_rate
        );
        result["native_function_records_per_s"] = function_rate.round().into();
        result["wasm_to_native_function"] =
            ((wasm_rate / function_rate * 100.0).round() / 100.0).into();
    }
    Ok(result)
}

/// (b) Chains in process, without Kafka: the tz normaliser; then the PII stripper after it; then
/// the enricher after both (a LEFT JOIN on `message` with a 1000-entry table, as in `make
/// bench-peers`); each over the same seed records in batches of 1024. What a longer chain costs
/// in transform work alone, next to `make bench-peers`'s end-to-end figures.
fn chains(engine: &Engine) -> Result<serde_json::Value> {
    let table = Arc::new(Table::new("servers", 64 << 20));
    for i in 0..1000 {
        let server = format!(r#"{{"host": "host-{i}", "region": "region-{}"}}"#, i % 7);
        (table.apply(i.to_string().as_bytes(), Some(server.as_bytes())))
            .map_err(anyhow::Error::msg)?;
    }
    let tables = Tables::new([table]);
    let stage = |name: &str, config: &[(&str, &str)]| -> Result<Arc<StageSpec>> {
        Ok(Arc::new(StageSpec {
            name: name.to_string(),
            version: 0,
            module: engine.load(&wasm(name)?)?,
            config: (config.iter())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }))
    };
    let tz = stage("tz_normaliser", &[])?;
    let pii = stage("pii_stripper", &[])?;
    let enricher = stage(
        "enricher",
        &[
            ("table", "servers"),
            ("key_field", "message"),
            ("fields", "host,region"),
        ],
    )?;
    let records = seed_records(200_000);
    let run = |chain: &mut Chain, records: &[Vec<u8>]| -> Result<Duration> {
        let mut batch = InputBatchBuilder::new("in", 0);
        let started = Instant::now();
        let mut outputs = 0;
        for chunk in records.chunks(1024) {
            batch.reset("in", 0);
            for (i, value) in chunk.iter().enumerate() {
                batch.push(i as i64, Some(0), None, Some(value), []);
            }
            let result = chain.run(batch.batch())?;
            anyhow::ensure!(result.failures.is_empty(), "a record failed in the chain");
            outputs += result.outputs().count();
        }
        anyhow::ensure!(outputs == records.len(), "{outputs} outputs");
        Ok(started.elapsed())
    };
    println!("\n    chains in process (no Kafka), batch 1024:");
    let mut result = serde_json::json!({});
    let mut rates = Vec::new();
    for stages in [
        vec![tz.clone()],
        vec![tz.clone(), pii.clone()],
        vec![tz, pii, enricher],
    ] {
        let length = stages.len();
        let mut no_state = |_| Err(InstantiateError::State("no state in this benchmark".into()));
        let outputs = Arc::new(vec!["out".to_string()]);
        let mut chain = Chain::new(
            engine,
            &Deployed::new(stages),
            outputs,
            &tables,
            &mut no_state,
        )?;
        run(&mut chain, &records[..10_000])?; // warm-up
        let samples = (0..ROUNDS)
            .map(|_| run(&mut chain, &records).map(|d| records.len() as f64 / d.as_secs_f64()))
            .collect::<Result<Vec<_>>>()?;
        let rate = median(samples);
        println!("    {length} stage(s): {rate:>10.0} records/s");
        result[length.to_string()] = rate.round().into();
        rates.push(rate);
    }
    let three_to_one = rates[2] / rates[0];
    println!("    three / one: {three_to_one:.2}");
    result["three_to_one"] = ((three_to_one * 100.0).round() / 100.0).into();
    Ok(result)
}

fn seed_records(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let (hour, offset) = if i % 2 == 0 {
                (10, "-0500")
            } else {
                (16, "+0100")
            };
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

/// (a) The boundary cost of a no-op transform, in ns per record, at batch sizes 1, 64, 1024.
fn boundary(engine: &Engine) -> Result<serde_json::Value> {
    let noop = engine.load(&wasm("test_guest")?)?;
    let mut instance = engine.instantiate(&noop, "noop", &[], &Default::default())?;
    let records: Vec<Vec<u8>> = (0..100_000)
        .map(|i| format!("{i:0100}").into_bytes())
        .collect();
    println!("\n(a) no-op transform, 100-byte records");
    let mut boundary = serde_json::Map::new();
    for batch_size in [1usize, 64, 1024] {
        let n = if batch_size == 1 {
            20_000
        } else {
            records.len()
        };
        run_wasm(&mut instance, &records[..n.min(2_000)], batch_size)?; // warm-up
        let samples = (0..ROUNDS)
            .map(|_| {
                run_wasm(&mut instance, &records[..n], batch_size)
                    .map(|d| d.as_nanos() as f64 / n as f64)
            })
            .collect::<Result<Vec<_>>>()?;
        let ns = median(samples);
        println!("    batch {batch_size:>5}: {ns:>8.1} ns/record");
        boundary.insert(format!("batch_{batch_size}_ns_per_record"), ns.into());
    }

    Ok(boundary.into())
}

/// (b) Each shipped transform as a Wasm component against the same transform compiled natively.
fn transforms(engine: &Engine) -> Result<serde_json::Value> {
    let native_fn = tz_normaliser::Normaliser::from_config(&Config::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let run_function = |records: &[Vec<u8>]| -> Result<Duration> {
        let mut out = Vec::with_capacity(128);
        let started = Instant::now();
        for value in records {
            out.clear();
            native_fn
                .normalise_value(value, &mut out)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            std::hint::black_box(&out);
        }
        Ok(started.elapsed())
    };
    let seed = seed_records(200_000);
    println!(
        "\n(b) shipped transforms, batch 1024: Wasm component against the same transform compiled natively"
    );
    println!("    (native runs the same SDK batch code: decode, process, encode outputs)");
    let tz = compare::<tz_normaliser::TzNormaliser>(
        engine,
        "tz_normaliser",
        &[],
        &Tables::default(),
        &seed,
        Some(&run_function),
    )?;

    let orders = order_records(200_000);
    let pii = compare::<pii_stripper::PiiStripper>(
        engine,
        "pii_stripper",
        &[],
        &Tables::default(),
        &orders,
        None,
    )?;
    // The second stage of `make bench-peers`' chain: the tz normaliser's outputs, no PII.
    let normalised: Vec<Vec<u8>> = seed
        .iter()
        .map(|value| {
            let mut out = Vec::new();
            native_fn.normalise_value(value, &mut out).map(|()| out)
        })
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("    (pii_stripper over the tz normaliser's outputs:)");
    let pii_on_tz = compare::<pii_stripper::PiiStripper>(
        engine,
        "pii_stripper",
        &[],
        &Tables::default(),
        &normalised,
        None,
    )?;

    let customers = Arc::new(Table::new("customers", 1 << 30));
    for id in 0..1000 {
        let value = format!(
            r#"{{"id":"{id}","name":"customer {id}","age":{}}}"#,
            20 + id % 60
        );
        customers
            .apply(id.to_string().as_bytes(), Some(value.as_bytes()))
            .map_err(|e| anyhow::anyhow!(e))?;
        sluice_sdk::testing::set_table(
            "customers",
            id.to_string().as_bytes(),
            Some(value.as_bytes()),
        );
    }
    let enrich_config = [
        ("table", "customers"),
        ("key_field", "customer_id"),
        ("fields", "name:customer_name,age:customer_age"),
    ];
    let enricher = compare::<enricher::Enricher>(
        engine,
        "enricher",
        &enrich_config,
        &Tables::new([customers]),
        &orders,
        None,
    )?;

    Ok(serde_json::json!({
        "tz_normaliser": tz,
        "pii_stripper": pii,
        "pii_stripper_tz_records": pii_on_tz,
        "enricher": enricher,
    }))
}

/// Where `make polyglot` puts the Python and TypeScript components.
fn polyglot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/polyglot")
}

/// (b) The e-mail masking of the PII stripper in Rust, Python and TypeScript, as components
/// over the same order records: size, compile and instantiate times, records/s and the ratio
/// to Rust. No target: the figures are there to choose a language by.
fn polyglot(engine: &Engine) -> Result<serde_json::Value> {
    const EMAIL_ONLY: &[(&str, &str)] = &[
        ("phone", "false"),
        ("card", "false"),
        ("ssn", "false"),
        ("ipv4", "false"),
        ("ipv6", "false"),
    ];
    let languages = [
        ("rust", wasm_dir().join("pii_stripper.wasm"), EMAIL_ONLY),
        (
            "python",
            polyglot_dir().join("email_mask_python.wasm"),
            &[][..],
        ),
        (
            "typescript",
            polyglot_dir().join("email_mask_typescript.wasm"),
            &[][..],
        ),
    ];
    let records = order_records(20_000);
    println!(
        "\n(b) e-mail masking as a component in each language, batch 1024, over order records"
    );
    let mut results = serde_json::Map::new();
    let mut rust_rate = None;
    for (language, path, config) in languages {
        let bytes = std::fs::read(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e} (run `make wasm polyglot`)", path.display()))?;
        let config: Vec<(String, String)> = (config.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let started = Instant::now();
        let module = engine.load(&bytes)?;
        let compile = started.elapsed();
        let mut instantiate = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            engine.instantiate(&module, language, &config, &Default::default())?;
            instantiate.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let instantiate_ms = median(instantiate);
        let mut instance = engine.instantiate(&module, language, &config, &Default::default())?;
        run_wasm(&mut instance, &records[..2_000], 1024)?; // warm-up
        let rates = (0..3)
            .map(|_| {
                Ok(records.len() as f64 / run_wasm(&mut instance, &records, 1024)?.as_secs_f64())
            })
            .collect::<Result<Vec<f64>>>()?;
        let rate = median(rates);
        let to_rust = rate / *rust_rate.get_or_insert(rate);
        println!(
            "    {language:<10} {:>6.1} MB, compile {:>6.0} ms, instantiate {instantiate_ms:>6.1} ms, {rate:>9.0} records/s, {to_rust:.3} of Rust",
            bytes.len() as f64 / 1e6,
            compile.as_secs_f64() * 1e3,
        );
        results.insert(
            language.to_string(),
            serde_json::json!({
                "component_bytes": bytes.len(),
                "compile_ms": (compile.as_secs_f64() * 1e3).round(),
                "instantiate_ms": (instantiate_ms * 10.0).round() / 10.0,
                "records_per_s": rate.round(),
                "to_rust": (to_rust * 1000.0).round() / 1000.0,
            }),
        );
    }
    Ok(results.into())
}

/// Whether a guest that loops forever is cut by the CPU budget (what makes epoch checks worth
/// their cost), within a few budgets.
fn looping_guest_is_stopped(engine: &Engine) -> Result<bool> {
    let looping = engine.load(&wasm("test_guest")?)?;
    let config = [("loop_on".to_string(), "spin".to_string())];
    let mut instance = engine.instantiate(&looping, "looping", &config, &Default::default())?;
    let mut batch = InputBatchBuilder::new("bench", 0);
    batch.push(0, None, None, Some(b"spin"), []);
    let started = Instant::now();
    let processed = instance.process(batch.batch())?;
    let stopped =
        processed.failures().len() == 1 && started.elapsed() < engine.limits().cpu_budget * 3;
    println!(
        "    a looping guest: {} after {:.2} s (CPU budget {:?})",
        if stopped { "stopped" } else { "NOT stopped" },
        started.elapsed().as_secs_f64(),
        engine.limits().cpu_budget
    );
    Ok(stopped)
}

/// `sluice demo`'s resident memory once running for `SLUICE_BENCH_DEMO_SECONDS` (120 by
/// default): the highest reading of its last 30 seconds, in MiB, and how much it grew over its
/// last minute.
fn demo_rss() -> Result<(f64, f64)> {
    let seconds: u64 = std::env::var("SLUICE_BENCH_DEMO_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let sluice = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/sluice");
    let mut child = std::process::Command::new(&sluice)
        .args(["demo", "--listen", "127.0.0.1:0", "--transforms"])
        .arg(wasm_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("{}: {e} (make bench builds it)", sluice.display()))?;
    let status = format!("/proc/{}/status", child.id());
    let rss_mib = || -> Option<f64> {
        let text = std::fs::read_to_string(&status).ok()?;
        let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
        Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
    };
    let mut readings = Vec::new();
    for _ in 0..seconds {
        std::thread::sleep(Duration::from_secs(1));
        if child.try_wait()?.is_some() {
            anyhow::bail!("sluice demo exited early");
        }
        readings.push(rss_mib().unwrap_or(0.0));
    }
    child.kill()?;
    child.wait()?;
    let last = |n: usize| &readings[readings.len().saturating_sub(n)..];
    let steady = last(30).iter().cloned().fold(0.0, f64::max);
    let minute = last(60);
    let growth = minute[minute.len() - 1] - minute[0];
    println!(
        "\n(d) sluice demo (its default rate), resident memory after {seconds} s: {steady:.0} MiB (the last minute: {growth:+.1} MiB)"
    );
    Ok((steady, growth))
}

fn main() -> Result<()> {
    // The runtime's own log, e.g. SLUICE_LOG=sluice::pipeline=debug for each commit's phases.
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if std::env::args().nth(1).as_deref() == Some("fleet") {
        let bootstrap = std::env::var("SLUICE_TEST_KAFKA").map_err(|_| {
            anyhow::anyhow!("no broker (SLUICE_TEST_KAFKA): run `make bench-fleet`")
        })?;
        let n = std::env::var("SLUICE_BENCH_RECORDS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(2_000_000);
        let results = fleet::run(&bootstrap, &seed_records(n))?;
        println!(
            "\n{}",
            serde_json::to_string(&serde_json::json!({ "fleet": results }))?
        );
        return Ok(());
    }
    let engine = Engine::new(Limits::default())?;
    println!("Sluice engine benchmarks ({} rounds each, median)", ROUNDS);
    let mut results = serde_json::json!({});
    let mut targets = Vec::new();

    // (a) Boundary cost.
    if selected("boundary") {
        results["boundary"] = boundary(&engine)?;
    }

    // (b) Each shipped transform, Wasm against native; the tz normaliser also against its bare
    // per-record function.
    if selected("transforms") {
        let transforms = transforms(&engine)?;
        targets.push(report::Target::at_least(
            "tz normaliser Wasm / native (SDK batch path)",
            transforms["tz_normaliser"]["wasm_to_native"]
                .as_f64()
                .unwrap_or(0.0),
            0.7,
        ));
        targets.push(report::Target::holds(
            "a looping guest is stopped by the CPU budget",
            looping_guest_is_stopped(&engine)?,
        ));
        results["transforms"] = transforms;
        results["chains"] = chains(&engine)?;
    }
    if selected("polyglot") {
        // An interpreter inside the component needs more than a Rust transform's 64 MiB default.
        let roomy = Engine::new(Limits {
            memory_bytes: 128 << 20,
            ..Limits::default()
        })?;
        results["polyglot"] = polyglot(&roomy)?;
    }
    match std::env::var("SLUICE_TEST_KAFKA") {
        Ok(bootstrap) => {
            let n = std::env::var("SLUICE_BENCH_RECORDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1_000_000);
            results["kafka"] = e2e::run(&bootstrap, &engine, n, &mut targets)?;
        }
        Err(_) => println!("\n(c) skipped: no broker (SLUICE_TEST_KAFKA); `make bench` starts one"),
    }
    if selected("demo") {
        let (rss_mib, growth) = demo_rss()?;
        results["demo"] =
            serde_json::json!({ "steady_rss_mib": rss_mib, "last_minute_growth_mib": growth });
        targets.push(report::Target::at_most(
            "sluice demo steady RSS, MiB",
            rss_mib,
            100.0,
        ));
    }
    report::print(&targets);
    if std::env::var_os("SLUICE_BENCH_ONLY").is_none() {
        let path = report::save("bench", &results, &targets)?;
        println!("\n(kept in {})", path.display());
    }
    println!("\n{}", serde_json::to_string(&results)?);
    Ok(())
}
