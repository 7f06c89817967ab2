//! `sluice demo`: the main job on an embedded broker, to see Sluice work before there is a Kafka.
//!
//! One process runs librdkafka's mock cluster (a Kafka-protocol broker in memory, which keeps at
//! most 5 MiB per partition, so memory stays bounded however long it runs), the seed generators,
//! the two seed pipelines (timezones; PII-then-enrich) and the dashboard. The mock cluster is for
//! trying Sluice only: production runs against a real Kafka with `sluice run`.

use crate::config::{Config, Overrides, Scalar};
use crate::generator::{self, Options, Pace, Scenario};
use anyhow::Context;
use clap::Args;
use rdkafka::mocking::MockCluster;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Examples shown by `sluice demo --help`.
pub const EXAMPLES: &str = "\
Examples:
  sluice demo                                  # then open http://127.0.0.1:8080/
  sluice demo --listen 127.0.0.1:9000 --rate 500
  sluice demo --transforms target/wasm32-wasip2/release

The embedded broker is librdkafka's mock cluster, in memory: for trying Sluice, not for
production. Run against a real Kafka with `sluice run`.";

/// Arguments of `sluice demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the dashboard and the API listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Records per second each generator sends.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// The folder holding tz_normaliser.wasm, pii_stripper.wasm and enricher.wasm; by default
    /// the first of $SLUICE_TRANSFORMS, the build's target/wasm32-wasip2/release, and
    /// /opt/sluice/transforms that has them.
    #[arg(long, value_name = "DIR")]
    pub transforms: Option<PathBuf>,
    /// Where uploaded modules and deployments are kept; a fresh temporary folder by default.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Bearer token for changes (uploads, deploys, pipelines), as `sluice run`'s.
    #[arg(
        long,
        env = "SLUICE_API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

const TRANSFORMS: [&str; 3] = ["tz_normaliser", "pii_stripper", "enricher"];

/// Topics of the demo and their partitions.
const TOPICS: [(&str, i32); 8] = [
    ("timezone1", 3),
    ("timezone2", 3),
    ("unified_timestamps", 3),
    ("unified_timestamps.dlq", 1),
    ("customers", 1),
    ("orders", 3),
    ("orders_enriched", 3),
    ("orders.dlq", 1),
];

/// Runs `sluice demo`; returns the exit status.
pub fn run(args: DemoArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(args.rate > 0.0, "--rate must be more than 0");
    let signals = super::run::StopSignals::listen()?;
    let listener = super::run::bind(args.listen)?;
    let transforms = transforms_dir(args.transforms.as_deref())?;
    let cluster = MockCluster::new(1).context("cannot start the embedded broker")?;
    for (topic, partitions) in TOPICS {
        cluster
            .create_topic(topic, partitions, 1)
            .with_context(|| format!("cannot create topic {topic}"))?;
    }
    let bootstrap = cluster.bootstrap_servers();
    let mut config = Config::parse(&config_text(&bootstrap, &transforms, args.listen))?;
    config.apply(Overrides {
        token: args.token,
        ..Overrides::default()
    })?;
    let temporary = tempfile::Builder::new()
        .prefix("sluice-demo-")
        .tempdir()
        .context("cannot create a state directory")?;
    let state_dir = args
        .state_dir
        .unwrap_or_else(|| temporary.path().to_path_buf());
    let engine = super::run::engine_for(&config)?
        .with_compiled_cache(super::run::compiled_cache_dir(&state_dir));

    let stop = Arc::new(AtomicBool::new(false));
    let generators: Vec<_> = [Scenario::Timezones, Scenario::Orders]
        .into_iter()
        .map(|scenario| {
            let stop = stop.clone();
            let mut kafka = config.kafka.clone();
            // Batches of a second: the embedded broker scans a partition's batches on every
            // fetch, so its CPU grows with their number (5 MiB of batches a partition at most);
            // a tenth of a second took a fifth of a core after an hour.
            kafka
                .producer
                .insert("linger.ms".into(), Scalar("1000".into()));
            let options = Options {
                partitions: 3,
                ..Options::new(scenario, Pace::Rate(args.rate))
            };
            std::thread::spawn(move || {
                if let Err(e) = generator::run(&kafka, &options, &stop) {
                    tracing::error!(?scenario, error = %format!("{e:#}"), "demo generator stopped");
                }
            })
        })
        .collect();
    let status = super::run::serve(
        &config,
        &engine,
        &state_dir,
        "demo",
        signals,
        listener,
        |address| {
            println!(
                "Sluice demo: an embedded broker, generators for seed 000 (timezones) and seed 004 (orders),"
            );
            println!(
                "and two pipelines: timezones -> unified_timestamps, orders -> PII stripper -> enricher -> orders_enriched."
            );
            println!();
            println!("  Dashboard:       http://{address}/");
            println!(
                "  Embedded broker: {bootstrap}   (e.g. sluice peek unified_timestamps --bootstrap-servers {bootstrap})"
            );
            println!();
            println!(
                "The embedded broker is for trying Sluice; production runs `sluice run` against a real Kafka."
            );
            println!("Ctrl-C stops the demo.");
        },
    );
    stop.store(true, Ordering::Relaxed);
    for generator in generators {
        let _ = generator.join();
    }
    drop(cluster);
    status
}

/// The demo's configuration: the two seed pipelines on the embedded broker.
fn config_text(bootstrap: &str, transforms: &Path, listen: std::net::SocketAddr) -> String {
    let module = |name: &str| format!("{:?}", transforms.join(format!("{name}.wasm")));
    format!(
        r#"
[kafka]
"bootstrap.servers" = "{bootstrap}"

# The embedded broker lives in this process: small fetches and a small prefetch keep the
# demo's memory low at its modest rates, and fuller batches keep its CPU low (it scans a
# partition's batches for every fetch).
[kafka.consumer]
"fetch.message.max.bytes" = 1048576
"queued.max.messages.kbytes" = 4096

[kafka.producer]
"linger.ms" = 100

[api]
listen = "{listen}"

[[pipeline]]
name = "timezones"
inputs = ["timezone1", "timezone2"]
outputs = ["unified_timestamps"]
dead_letter = "unified_timestamps.dlq"
linger_ms = 50

[[pipeline.transform]]
module = {tz}

[[pipeline]]
name = "orders"
inputs = ["orders"]
outputs = ["orders_enriched"]
dead_letter = "orders.dlq"
linger_ms = 50

[[pipeline.table]]
name = "customers"
topic = "customers"

[[pipeline.transform]]
module = {pii}

[[pipeline.transform]]
module = {enricher}
config = {{ table = "customers", key_field = "customer_id", fields = "name:customer_name,age:customer_age" }}
"#,
        tz = module("tz_normaliser"),
        pii = module("pii_stripper"),
        enricher = module("enricher"),
    )
}

/// The first folder that holds every shipped transform.
fn transforms_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let has_all = |dir: &Path| {
        TRANSFORMS
            .iter()
            .all(|t| dir.join(format!("{t}.wasm")).is_file())
    };
    if let Some(dir) = given {
        anyhow::ensure!(
            has_all(dir),
            "{} does not hold {}.wasm",
            dir.display(),
            TRANSFORMS.join(".wasm, ")
        );
        return Ok(dir.to_path_buf());
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("SLUICE_TRANSFORMS")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    if let Ok(exe) = std::env::current_exe() {
        // target/{debug,release}/sluice -> target/wasm32-wasip2/release
        if let Some(target) = exe.parent().and_then(Path::parent) {
            candidates.push(target.join("wasm32-wasip2/release"));
        }
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release"));
    candidates.push(PathBuf::from("/opt/sluice/transforms"));
    candidates.into_iter().find(|dir| has_all(dir)).ok_or_else(|| {
        anyhow::anyhow!(
            "cannot find the shipped transforms ({}.wasm): build them with `make wasm`, or pass --transforms DIR",
            TRANSFORMS.join(".wasm, ")
        )
    })
}
