//! End to end on a real Kafka broker: the pipe's limit (the same consume-then-produce path with
//! no transform) against the tz pipeline over the same seed-000 records, and latency from
//! produce to output at half the tz pipeline's peak rate.

use crate::report::Target;
use crate::selected;
use anyhow::{Context, Result};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use sluice::config::Config;
use sluice::engine::Engine;
use sluice::pipeline;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PARTITIONS: i32 = 3;

/// How long records are produced at half the tz rate for the latency figures (after a second
/// of warm-up): long enough that one pause of the broker's JVM does not make the p99.
const LATENCY_SECONDS: u64 = 10;

/// The exactly-once variant of a pipeline, committing every 100 ms.
const EXACTLY_ONCE: &str = "guarantee = \"exactly-once\"\ncommit_interval_ms = 100";

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

fn create_topics(bootstrap: &str, topics: &[&str]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for result in runtime.block_on(admin.create_topics(&new, &AdminOptions::new()))? {
        result.map_err(|(topic, e)| anyhow::anyhow!("cannot create {topic}: {e}"))?;
    }
    Ok(())
}

fn producer(bootstrap: &str) -> Result<ThreadedProducer<DefaultProducerContext>> {
    Ok(client(bootstrap)
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()?)
}

fn send(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str, value: &[u8]) {
    let mut record = BaseRecord::<(), [u8]>::to(topic).payload(value);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, returned)) => {
                record = returned;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Records currently on `topic`: the sum of its partitions' high watermarks.
fn count(consumer: &BaseConsumer, topic: &str) -> i64 {
    (0..PARTITIONS)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .map(|(_, high)| high)
                .unwrap_or(0)
        })
        .sum()
}

/// A `sluice.toml` with one pipeline.
fn pipeline_text(
    bootstrap: &str,
    name: &str,
    inputs: &[&str],
    output: &str,
    module: Option<&Path>,
    start: &str,
    settings: &str,
) -> String {
    let transform = module
        .map(|m| format!("[[pipeline.transform]]\nmodule = \"{}\"\n", m.display()))
        .unwrap_or_default();
    let inputs: Vec<String> = inputs.iter().map(|i| format!("\"{i}\"")).collect();
    format!(
        "[kafka]\n\"bootstrap.servers\" = \"{bootstrap}\"\n\n[api]\nlisten = \"127.0.0.1:0\"\n\n[[pipeline]]\nname = \"{name}\"\ninputs = [{}]\n\
         outputs = [\"{output}\"]\nstart = \"{start}\"\n{settings}\n{transform}",
        inputs.join(", ")
    )
}

/// Seconds from starting a `sluice run` process to its first output on the broker: its first
/// start (a new state directory: the module is compiled, the group has no offsets yet), and the
/// median of three restarts, each after a graceful stop with new records waiting (the module
/// was seen before and is loaded compiled from the state directory; the group resumes from its
/// committed offsets).
fn startup(bootstrap: &str, module: &Path, id: &str) -> Result<(f64, f64)> {
    let sluice = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/sluice");
    let dir = std::env::temp_dir().join(format!("sluice-bench-startup-{id}"));
    std::fs::create_dir_all(&dir)?;
    let (input, output) = (format!("startup-in-{id}"), format!("startup-out-{id}"));
    create_topics(bootstrap, &[&input, &output])?;
    let text = pipeline_text(
        bootstrap,
        &format!("startup-{id}"),
        &[&input],
        &output,
        Some(module),
        "earliest",
        "",
    );
    let file = dir.join("sluice.toml");
    std::fs::write(&file, text)?;
    let watcher: BaseConsumer = client(bootstrap).create()?;
    let producer = producer(bootstrap)?;
    let mut seconds = Vec::new();
    for round in 1..=4 {
        for value in crate::seed_records(1000) {
            send(&producer, &input, &value);
        }
        producer.flush(Duration::from_secs(30))?;
        let before = count(&watcher, &output);
        let started = Instant::now();
        let mut child = std::process::Command::new(&sluice)
            .args(["run", "-f"])
            .arg(&file)
            .env(
                "SLUICE_LOG",
                std::env::var("SLUICE_BENCH_STARTUP_LOG").unwrap_or("warn".into()),
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("run-{round}.log")))?)
            .spawn()
            .with_context(|| format!("{} (make bench builds it)", sluice.display()))?;
        let wait_for = |outputs: i64, child: &mut std::process::Child| -> Result<Duration> {
            loop {
                if count(&watcher, &output) >= outputs {
                    return Ok(started.elapsed());
                }
                if let Some(status) = child.try_wait()? {
                    anyhow::bail!("sluice run exited ({status}); see {}", dir.display());
                }
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(60),
                    "no output after 60 s; see {}",
                    dir.display()
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        seconds.push(wait_for(before + 1, &mut child)?.as_secs_f64());
        wait_for(before + 1000, &mut child)?;
        // A graceful stop commits the offsets, as on a rolling restart.
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        anyhow::ensure!(child.wait()?.success(), "sluice run did not stop cleanly");
    }
    if std::env::var_os("SLUICE_BENCH_STARTUP_LOG").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok((seconds[0], crate::median(seconds[1..].to_vec())))
}

/// Starts `config`'s pipeline and waits until it has its partitions.
fn start_running(
    config: &Config,
    engine: &Engine,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<pipeline::RunningPipeline>> {
    // Stateful transforms keep their state in a folder of the process's own.
    let state_dir = std::env::temp_dir().join(format!("sluice-bench-{}", std::process::id()));
    let definition = &config.pipeline[0];
    let tables = pipeline::declared_tables(definition);
    let stages = pipeline::load_stages(engine, 0, definition, &tables)?;
    let shared = Arc::new(pipeline::Pipeline::new(definition, tables, stages));
    let pipelines = vec![pipeline::start(
        config,
        definition,
        engine,
        &state_dir,
        "bench",
        shared,
        stop.clone(),
    )?];
    let deadline = Instant::now() + Duration::from_secs(60);
    while pipelines[0].pipeline.metrics.status() != pipeline::metrics::Status::Running {
        anyhow::ensure!(
            Instant::now() < deadline,
            "pipeline did not start: {:?}",
            pipelines[0].pipeline.metrics.status()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(pipelines)
}

/// Runs one pipeline over the preloaded inputs; returns records/s from the moment it has its
/// partitions to the last output acknowledged on the broker (group join time is the broker's,
/// not the pipeline's, and would swamp a few seconds of work).
fn throughput(
    bootstrap: &str,
    engine: &Engine,
    config: &Config,
    output: &str,
    n: i64,
) -> Result<f64> {
    let watcher: BaseConsumer = client(bootstrap).create()?;
    let stop = Arc::new(AtomicBool::new(false));
    let pipelines = start_running(config, engine, &stop)?;
    let started = Instant::now();
    while count(&watcher, output) < n {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "{output}: timed out"
        );
        anyhow::ensure!(
            !pipelines.iter().any(|p| p.is_finished()),
            "pipeline stopped: {:?}",
            pipelines[0].pipeline.metrics.status()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    pipelines.into_iter().for_each(|p| p.join());
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// What `latency` measured over the records after its warm-up.
struct Latency {
    p50_ms: f64,
    p99_ms: f64,
    records: usize,
    /// The rate they were actually produced at, records/s.
    produced_rate: f64,
    /// Its seconds beside the broker's GC pauses (see `broker_gc_line`), if the broker has a log.
    broker_gc: Option<String>,
}

/// Feeds the tz pipeline at `rate` records/s for a second of warm-up and then `seconds`, and
/// measures the latency of the records after the warm-up. Each record is timed from its produce
/// call until a reader of the output topic (read_committed, on a thread of its own) has its
/// output: for an exactly-once pipeline, that includes waiting for the transaction's commit.
/// Without a `module`, no Sluice runs and the reader reads the input topics: the broker's share.
fn latency(
    bootstrap: &str,
    module: Option<&Path>,
    rate: f64,
    seconds: u64,
    id: &str,
    settings: &str,
) -> Result<Latency> {
    let (in1, in2, out) = (
        format!("lat-tz1-{id}"),
        format!("lat-tz2-{id}"),
        format!("lat-out-{id}"),
    );
    create_topics(bootstrap, &[&in1, &in2, &out])?;
    // Its own `sluice run` process, as in production: the harness's producer, reader and
    // records stay out of its memory and allocator.
    let dir = std::env::temp_dir().join(format!("sluice-bench-latency-{id}"));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("sluice.toml");
    let process = match module {
        Some(module) => {
            let text = pipeline_text(
                bootstrap,
                &format!("lat-{id}"),
                &[&in1, &in2],
                &out,
                Some(module),
                "earliest",
                settings,
            );
            std::fs::write(&file, text)?;
            let sluice = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/sluice");
            let process = std::process::Command::new(&sluice)
                .args(["run", "-f"])
                .arg(&file)
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(dir.join("run.log"))?)
                .spawn()
                .with_context(|| format!("{} (make bench builds it)", sluice.display()))?;
            Some(process)
        }
        None => None,
    };

    let warm_up = rate as usize;
    let records = crate::seed_records(warm_up + (rate * seconds as f64) as usize);
    let reader: BaseConsumer = client(bootstrap)
        .set("group.id", format!("lat-reader-{id}"))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()?;
    match module {
        Some(_) => reader.subscribe(&[&out])?,
        None => reader.subscribe(&[&in1, &in2])?,
    }
    let total = records.len();
    let arrived = Arc::new(AtomicUsize::new(0));
    let read = std::thread::spawn({
        let arrived = arrived.clone();
        move || {
            let mut received_ms = vec![None; total];
            let deadline = Instant::now() + Duration::from_secs(600);
            while arrived.load(Ordering::Relaxed) < total && Instant::now() < deadline {
                if let Some(Ok(message)) = reader.poll(Duration::from_millis(100)) {
                    let at = unix_ms();
                    if let Some(slot) = (message.payload().and_then(seed_index))
                        .and_then(|index| received_ms.get_mut(index))
                    {
                        *slot = Some(at);
                        arrived.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            received_ms
        }
    });
    let producer = producer(bootstrap)?;
    let mut sent_ms = vec![0f64; records.len()];
    // The first record goes alone, and the rate starts once its output has arrived: the
    // figure is for a running pipeline, not for the backlog of its start-up (measured apart).
    sent_ms[0] = unix_ms();
    send(&producer, &in1, &records[0]);
    let ready_by = Instant::now() + Duration::from_secs(60);
    while arrived.load(Ordering::Relaxed) == 0 {
        anyhow::ensure!(
            Instant::now() < ready_by,
            "no output within 60 s of starting"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    let mut measured_from = started;
    for (i, value) in records.iter().enumerate().skip(1) {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        if let Some(ahead) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(ahead);
        }
        if i == warm_up {
            measured_from = Instant::now();
        }
        sent_ms[i] = unix_ms();
        send(&producer, if i % 2 == 0 { &in1 } else { &in2 }, value);
    }
    let measured = records.len() - warm_up;
    let produced_rate = measured as f64 / measured_from.elapsed().as_secs_f64();
    producer.flush(Duration::from_secs(30))?;
    let received_ms = read.join().expect("the reader thread does not panic");
    if let Some(mut process) = process {
        process.kill()?;
        process.wait()?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut latencies: Vec<f64> = (warm_up..records.len())
        .filter_map(|i| Some(received_ms[i]? - sent_ms[i]))
        .collect();
    anyhow::ensure!(
        latencies.len() == measured,
        "only {} of {measured} outputs arrived",
        latencies.len(),
    );
    let broker_gc = broker_gc_line(&latencies, &sent_ms[warm_up..], rate as usize);
    latencies.sort_unstable_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].round();
    Ok(Latency {
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        records: latencies.len(),
        produced_rate,
        broker_gc,
    })
}

fn print_broker_gc(latency: &Latency) {
    if let Some(line) = &latency.broker_gc {
        println!("      {line}");
    }
}

/// Lines each measured second up with the broker's GC pauses: the median p99 of the seconds with
/// one against that of the others (None without the broker's gc.log). With
/// `SLUICE_BENCH_LATENCY_TRACE` set, prints every second's p99 and max too, to tell warm-up from
/// steady tails.
fn broker_gc_line(latencies: &[f64], sent_ms: &[f64], per_second: usize) -> Option<String> {
    /// One measured second: its p99 and max, and the longest broker pause that overlapped it
    /// (0 without one).
    struct Second {
        p99: f64,
        max: f64,
        pause: f64,
    }
    let pauses = broker_gc_pauses();
    let seconds: Vec<Second> = (latencies.chunks_exact(per_second).enumerate())
        .map(|(i, chunk)| {
            let mut chunk = chunk.to_vec();
            chunk.sort_unstable_by(f64::total_cmp);
            let from = sent_ms[i * per_second];
            // The longest pause that overlapped this second (a line is logged as a pause ends).
            let pause = (pauses.iter())
                .filter(|(end, length)| *end > from && end - length < from + 1000.0)
                .map(|(_, length)| *length)
                .fold(0.0, f64::max);
            Second {
                p99: chunk[(chunk.len() - 1) * 99 / 100],
                max: chunk[chunk.len() - 1],
                pause,
            }
        })
        .collect();
    if std::env::var_os("SLUICE_BENCH_LATENCY_TRACE").is_some() {
        for (i, Second { p99, max, pause }) in seconds.iter().enumerate() {
            eprintln!(
                "      second {i}: p99 {p99:.0} ms, max {max:.0} ms, broker GC pause {pause:.0} ms"
            );
        }
    }
    if pauses.is_empty() {
        return None;
    }
    let median_p99 = |with_pause: bool| {
        let mut p99s: Vec<f64> = (seconds.iter())
            .filter(|s| (s.pause > 0.0) == with_pause)
            .map(|s| s.p99)
            .collect();
        p99s.sort_unstable_by(f64::total_cmp);
        p99s.get(p99s.len() / 2)
            .map_or("-".into(), |p99| format!("{p99:.0} ms"))
    };
    Some(format!(
        "broker GC pauses in {} of {} seconds (longest {:.0} ms): median p99 of those seconds {}, of the others {}",
        seconds.iter().filter(|s| s.pause > 0.0).count(),
        seconds.len(),
        seconds.iter().map(|s| s.pause).fold(0.0, f64::max),
        median_p99(true),
        median_p99(false),
    ))
}

/// The broker's GC pauses, each as (ms since the epoch when it ended, its length in ms), from the
/// gc.log that tests/kafka/broker.sh has the broker's JVM write; empty without one.
fn broker_gc_pauses() -> Vec<(f64, f64)> {
    let Some(dir) = std::env::var_os("SLUICE_BROKER_DIR") else {
        return Vec::new();
    };
    gc_pauses(&std::fs::read_to_string(Path::new(&dir).join("gc.log")).unwrap_or_default())
}

/// The pauses in a JVM's `-Xlog:gc` output with the `utctime,timemillis` decorations.
fn gc_pauses(log: &str) -> Vec<(f64, f64)> {
    (log.lines().filter(|line| line.contains(" Pause ")))
        .filter_map(|line| {
            let end = line.split("][").nth(1)?.split("ms]").next()?.parse().ok()?;
            let length = line.rsplit(' ').next()?.strip_suffix("ms")?.parse().ok()?;
            Some((end, length))
        })
        .collect()
}

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// The index in a seed record's `"message": "INDEX"`.
fn seed_index(value: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(value).ok()?;
    let rest = &text[text.find("\"message\"")? + 9..];
    let start = rest.find('"')? + 1;
    let end = start + rest[start..].find('"')?;
    rest[start..end].parse().ok()
}

/// Orders `{"customer_id", "t", "amount"}` over 10,000 customers, a second apart in event time,
/// for the windowed aggregate.
fn order_records(n: usize) -> Vec<Vec<u8>> {
    let start = 1_704_067_200_000i64; // 2024-01-01T00:00:00Z
    (0..n)
        .map(|i| {
            let customer = i * 7919 % 10_000;
            let amount = (i * 31 % 10_000) as f64 / 100.0;
            format!(
                r#"{{"customer_id": "c{customer}", "t": {}, "amount": {amount}}}"#,
                start + i as i64 * 1000
            )
            .into_bytes()
        })
        .collect()
}

/// The windowed aggregate's configuration for the benchmark: hourly count, sum and average per
/// customer, an update per record (so that every input has an output to wait for). A task reads
/// its two inputs side by side, not in event-time order, so its stream time runs ahead of one
/// of them: the lateness covers the `n` orders' whole span (a second each), so that none is late.
fn windowed_transform(module: &Path, n: usize) -> String {
    format!(
        "[[pipeline.transform]]\nmodule = \"{}\"\nconfig = {{ key = \"customer_id\", time = \"t\", value = \"amount\", window = \"1h\", emit = \"updates\", aggregations = \"count,sum,avg\", allowed_lateness = \"{}d\" }}\n",
        module.display(),
        n / 86_400 + 1
    )
}

/// This process's resident memory, in MB (0 where /proc is not there).
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Seconds to restore a task's state per million keys: a changelog partition is filled with
/// `keys` changes of 100-byte values, then a task's state is opened from it, as on assignment.
/// Also returns the resident memory (MB) with the restored state open.
fn restore_seconds_per_million(bootstrap: &str, id: &str, keys: usize) -> Result<(f64, f64)> {
    let name = format!("restore-{id}");
    let input = format!("restore-in-{id}");
    let changelog = format!("sluice-{name}-state-0-changelog");
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create()?;
    let topics = [
        NewTopic::new(&input, 1, TopicReplication::Fixed(1)),
        NewTopic::new(&changelog, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact"),
    ];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for result in runtime.block_on(admin.create_topics(&topics, &AdminOptions::new()))? {
        result.map_err(|(topic, e)| anyhow::anyhow!("cannot create {topic}: {e}"))?;
    }
    let producer = producer(bootstrap)?;
    let value = [7u8; 100];
    for i in 0..keys as u64 {
        // Keys as the host writes them: the guest's entries under prefix 0.
        let mut key = vec![0u8];
        key.extend_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        let mut record = BaseRecord::to(&changelog).key(&key).payload(&value[..]);
        while let Err((_, returned)) = producer.send(record) {
            record = returned;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    producer.flush(Duration::from_secs(120))?;
    let config = Config::parse(&pipeline_text(
        bootstrap,
        &name,
        &[&input],
        "unused",
        None,
        "earliest",
        "",
    ))?;
    let pipeline = config.pipeline[0].clone();
    let dir = std::env::temp_dir().join(format!("sluice-bench-restore-{id}"));
    let metrics = Arc::new(pipeline::metrics::PipelineMetrics::new(
        &name,
        &pipeline.inputs,
        &[],
    ));
    let stores =
        pipeline::state_store::StateStores::new(&dir, &config.kafka, &pipeline, metrics.clone());
    let started = Instant::now();
    stores.open(0, 0, 0)?;
    let elapsed = started.elapsed().as_secs_f64();
    let restored = metrics.state_restored_records.load(Ordering::Relaxed);
    anyhow::ensure!(
        restored == keys as u64,
        "restored {restored} of {keys} keys"
    );
    let rss = rss_mb();
    drop(stores);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((elapsed / keys as f64 * 1e6, rss))
}

/// The pipe's limit (no transform), the tz pipeline at-least-once and exactly-once, alternated
/// twice, best of each; returns the tz rates (at-least-once, exactly-once).
#[allow(clippy::too_many_arguments)]
fn throughputs(
    bootstrap: &str,
    engine: &Engine,
    n: usize,
    module: &Path,
    id: &str,
    tz1: &str,
    tz2: &str,
    outputs: &[String],
    results: &mut serde_json::Value,
) -> Result<(f64, f64)> {
    // Alternate the three runs (no transform; tz at-least-once; tz exactly-once), twice each,
    // and keep each one's best.
    let (mut limit, mut tz_rate, mut exactly_rate) = (0f64, 0f64, 0f64);
    for (round, output) in outputs.iter().enumerate() {
        let name = format!("run{round}-{id}");
        let (transform, settings, best) = match round % 3 {
            0 => (None, "", &mut limit),
            1 => (Some(module), "", &mut tz_rate),
            _ => (Some(module), EXACTLY_ONCE, &mut exactly_rate),
        };
        let config = Config::parse(&pipeline_text(
            bootstrap,
            &name,
            &[tz1, tz2],
            output,
            transform,
            "earliest",
            settings,
        ))?;
        let rate = throughput(bootstrap, engine, &config, output, n as i64)?;
        *best = best.max(rate);
    }
    println!("    passthrough (no transform): {limit:>10.0} records/s");
    println!("    tz normaliser in Wasm:      {tz_rate:>10.0} records/s");
    println!("    tz, exactly-once:           {exactly_rate:>10.0} records/s");
    println!("    tz / passthrough: {:.2}", tz_rate / limit);
    println!(
        "    exactly-once / at-least-once: {:.2} (target at least 0.8)",
        exactly_rate / tz_rate
    );

    results["passthrough_records_per_s"] = limit.round().into();
    results["tz_records_per_s"] = tz_rate.round().into();
    results["tz_exactly_once_records_per_s"] = exactly_rate.round().into();
    results["tz_to_passthrough"] = ((tz_rate / limit * 100.0).round() / 100.0).into();
    results["exactly_once_to_at_least_once"] =
        ((exactly_rate / tz_rate * 100.0).round() / 100.0).into();
    Ok((tz_rate, exactly_rate))
}

/// The windowed aggregate over orders of the same count, at-least-once and exactly-once.
#[allow(clippy::too_many_arguments)]
fn windowed(
    bootstrap: &str,
    engine: &Engine,
    n: usize,
    module: &Path,
    id: &str,
    producer: &ThreadedProducer<DefaultProducerContext>,
    tz_rate: f64,
    exactly_rate: f64,
    results: &mut serde_json::Value,
) -> Result<()> {
    let windowed = module.with_file_name("windowed_aggregate.wasm");
    let (orders1, orders2) = (format!("bench-orders1-{id}"), format!("bench-orders2-{id}"));
    create_topics(bootstrap, &[&orders1, &orders2])?;
    for (i, value) in order_records(n).iter().enumerate() {
        // By customer, so that each customer's orders meet in one task.
        let customer = (i * 7919 % 10_000) as i32;
        let topic = if i % 2 == 0 { &orders1 } else { &orders2 };
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .payload(value)
            .partition(customer % PARTITIONS);
        while let Err((_, returned)) = producer.send(record) {
            record = returned;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    producer.flush(Duration::from_secs(60))?;
    let (mut windowed_rate, mut windowed_eos_rate) = (0f64, 0f64);
    for round in 0..4 {
        let (settings, best) = match round % 2 {
            0 => ("", &mut windowed_rate),
            _ => (EXACTLY_ONCE, &mut windowed_eos_rate),
        };
        let name = format!("windowed{round}-{id}");
        let output = format!("bench-windowed-out{round}-{id}");
        create_topics(bootstrap, &[&output])?;
        let config = Config::parse(&pipeline_text(
            bootstrap,
            &name,
            &[&orders1, &orders2],
            &output,
            None,
            "earliest",
            &format!("{settings}\n{}", windowed_transform(&windowed, n)),
        ))?;
        let rate = throughput(bootstrap, engine, &config, &output, n as i64)?;
        *best = best.max(rate);
    }
    println!(
        "    windowed aggregate (hourly per customer, state on disk + changelog): {windowed_rate:>10.0} records/s"
    );
    println!("    windowed aggregate, exactly-once: {windowed_eos_rate:>10.0} records/s");
    println!(
        "    windowed / tz: {:.2}; exactly-once windowed / exactly-once tz: {:.2}",
        windowed_rate / tz_rate,
        windowed_eos_rate / exactly_rate
    );
    results["windowed_records_per_s"] = windowed_rate.round().into();
    results["windowed_exactly_once_records_per_s"] = windowed_eos_rate.round().into();
    Ok(())
}

/// Runs the end-to-end benchmark; prints figures and returns them as JSON.
pub fn run(
    bootstrap: &str,
    engine: &Engine,
    n: usize,
    targets: &mut Vec<Target>,
) -> Result<serde_json::Value> {
    let mut results = serde_json::json!({ "records": n });
    let module = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/release/tz_normaliser.wasm");
    let module = module
        .canonicalize()
        .context("build the transforms first (make wasm)")?;
    let id = format!(
        "{}",
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs()
    );
    let (tz1, tz2) = (format!("bench-tz1-{id}"), format!("bench-tz2-{id}"));
    let outputs: Vec<String> = (0..6).map(|i| format!("bench-out{i}-{id}")).collect();
    let mut topics = vec![tz1.as_str(), tz2.as_str()];
    topics.extend(outputs.iter().map(String::as_str));
    create_topics(bootstrap, &topics)?;

    println!(
        "\n(c) end to end on Apache Kafka: {n} seed-000 records over 2 topics x {PARTITIONS} partitions"
    );
    let producer = producer(bootstrap)?;
    for (i, value) in crate::seed_records(n).iter().enumerate() {
        send(&producer, if i % 2 == 0 { &tz1 } else { &tz2 }, value);
    }
    producer.flush(Duration::from_secs(60))?;
    // Without the throughput runs, latency is measured at this rate (`SLUICE_BENCH_TZ_RATE`).
    let mut tz_rate: f64 = std::env::var("SLUICE_BENCH_TZ_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(600_000.0);
    let mut exactly_rate = 0f64;
    if selected("kafka") {
        (tz_rate, exactly_rate) = throughputs(
            bootstrap,
            engine,
            n,
            &module,
            &id,
            &tz1,
            &tz2,
            &outputs,
            &mut results,
        )?;
    }

    if selected("startup") {
        let (new, seen) = startup(bootstrap, &module, &id)?;
        println!(
            "    start-up to first output: {:.0} ms at the first start (compiles; new group), {:.0} ms at a restart (module seen before; median of 3)",
            new * 1000.0,
            seen * 1000.0
        );
        results["startup_new_ms"] = (new * 1000.0).round().into();
        results["startup_seen_ms"] = (seen * 1000.0).round().into();
        targets.push(Target::at_most(
            "start-up to first output, module seen before, ms",
            seen * 1000.0,
            100.0,
        ));
    }
    // Latency first, on a broker not yet loaded by the windowed runs' state and changelogs.
    if selected("latency") {
        let rate = tz_rate / 2.0;
        // For tuning experiments: TOML added to the pipeline's table, e.g. `linger_ms = 5`.
        let extra = std::env::var("SLUICE_BENCH_LATENCY_SETTINGS").unwrap_or_default();
        // The broker alone first, at the same rate: its share of the figure below.
        let broker_id = format!("{id}-broker");
        let broker = latency(bootstrap, None, rate, LATENCY_SECONDS, &broker_id, "")?;
        println!(
            "    the broker alone at {rate:.0} records/s (produce to a reader of the input topics): p50 {:.0} ms, p99 {:.0} ms",
            broker.p50_ms, broker.p99_ms,
        );
        print_broker_gc(&broker);
        results["broker_latency_p50_ms"] = broker.p50_ms.into();
        results["broker_latency_p99_ms"] = broker.p99_ms.into();
        let at_least_once = latency(bootstrap, Some(&module), rate, LATENCY_SECONDS, &id, &extra)?;
        let p99 = at_least_once.p99_ms;
        println!(
            "    latency at {rate:.0} records/s (half the tz peak; produced at {:.0}/s): p50 {:.0} ms, p99 {p99:.0} ms ({} records)",
            at_least_once.produced_rate, at_least_once.p50_ms, at_least_once.records,
        );
        print_broker_gc(&at_least_once);
        if selected("eos-latency") {
            let exactly_id = format!("{id}-eos");
            let exactly_once = latency(
                bootstrap,
                Some(&module),
                rate,
                LATENCY_SECONDS,
                &exactly_id,
                EXACTLY_ONCE,
            )?;
            println!(
                "    exactly-once latency at {rate:.0} records/s (produced at {:.0}/s, read_committed): p50 {:.0} ms, p99 {:.0} ms ({} records); target p99 at most {:.0} ms (2 x at-least-once + commit_interval_ms)",
                exactly_once.produced_rate,
                exactly_once.p50_ms,
                exactly_once.p99_ms,
                exactly_once.records,
                2.0 * p99 + 100.0
            );
            print_broker_gc(&exactly_once);
            results["exactly_once_latency_p50_ms"] = exactly_once.p50_ms.into();
            results["exactly_once_latency_p99_ms"] = exactly_once.p99_ms.into();
        }
        results["latency_rate"] = rate.round().into();
        results["latency_produced_rate"] = at_least_once.produced_rate.round().into();
        results["latency_p50_ms"] = at_least_once.p50_ms.into();
        results["latency_p99_ms"] = p99.into();
        targets.push(Target::at_most(
            "p99 produce to output at half the tz rate, ms",
            p99,
            50.0,
        ));
    }
    if selected("windowed") {
        windowed(
            bootstrap,
            engine,
            n,
            &module,
            &id,
            &producer,
            tz_rate,
            exactly_rate,
            &mut results,
        )?;
    }
    if selected("restore") {
        // SLUICE_BENCH_RESTORE_KEYS=10000000 checks that memory stays bounded with many keys.
        let keys = std::env::var("SLUICE_BENCH_RESTORE_KEYS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        let rss_before = rss_mb();
        let (restore, rss_restored) = restore_seconds_per_million(bootstrap, &id, keys)?;
        println!(
            "    restore from a changelog: {restore:.2} s per million keys ({keys} keys, 100-byte values); resident memory {rss_before:.0} MB before, {rss_restored:.0} MB with the state open"
        );

        results["restore_seconds_per_million_keys"] = ((restore * 100.0).round() / 100.0).into();
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    #[test]
    fn gc_pauses_are_read_from_the_brokers_gc_log() {
        let log = "[2026-12-06T18:32:11.279+0000][1796581931279ms] Using G1\n\
            [2026-12-06T18:32:11.563+0000][1796581931563ms] GC(0) Pause Young (Normal) (G1 Evacuation Pause) 13M->4M(258M) 6.630ms\n\
            [2026-12-06T18:32:12.001+0000][1796581932001ms] GC(1) Pause Remark 40M->40M(258M) 1.250ms\n\
            [2026-12-06T18:32:12.002+0000][1796581932002ms] GC(1) Concurrent Mark Cycle 30.117ms\n";
        assert_eq!(
            super::gc_pauses(log),
            [(1796581931563.0, 6.63), (1796581932001.0, 1.25)]
        );
    }
}
