//! `sluice gen`: realistic test traffic to any Kafka (the record generation is in
//! [`crate::generator`], shared with `sluice demo`).

use crate::generator::{self, Options, Pace, Scenario};
use anyhow::Context;
use clap::Args;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Examples shown by `sluice gen --help`.
pub const EXAMPLES: &str = "\
Examples:
  sluice gen --bootstrap-servers localhost:9092                    # seed-000 logs, 1 record/s, until Ctrl-C
  sluice gen --scenario timezones --count 10000                    # 10,000 records as fast as possible, then exit
  sluice gen --scenario orders --rate 200 --late-fraction 0.1      # customers and orders, 10% late
  sluice gen --burst 500 --burst-interval 10                       # 500 records at once every 10 s
  sluice gen --rate max --topics logs-ny,logs-paris --seed 7       # flat out, to other topics
  sluice gen -X security.protocol=SASL_SSL -X sasl.mechanisms=SCRAM-SHA-512 \\
    -X sasl.username=me -X sasl.password=secret --count 100

Scenarios: `timezones` writes seed-000 logs ({\"date\": \"2024-02-05 10:01:52.884548 -0500\",
\"message\": \"0\"}) to timezone1 (New York) and timezone2 (Paris); `orders` writes seed-004
customers, keyed by id, to customers (created compacted) and orders referencing them to orders.
Missing topics are created. Ctrl-C stops, waits for the broker's acknowledgements and exits 0.";

/// Arguments of `sluice gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    /// Where Kafka is (localhost:9092 by default) and how to talk to it.
    #[command(flatten)]
    pub kafka: crate::kafka::ClientKafkaArgs,
    /// The traffic to generate.
    #[arg(long, value_enum, default_value_t = Scenario::Timezones)]
    pub scenario: Scenario,
    /// The scenario's two topics, instead of timezone1,timezone2 or customers,orders.
    #[arg(long, value_name = "TOPIC,TOPIC", value_delimiter = ',', num_args = 1)]
    pub topics: Option<Vec<String>>,
    /// Records per second, or `max` for as fast as possible. Default: max with --count, else 1.
    #[arg(long, value_name = "N|max", value_parser = parse_rate, conflicts_with = "burst")]
    pub rate: Option<Rate>,
    /// Stop after this many records (over both topics).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Send records in bursts of this many at once, every --burst-interval seconds.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub burst: Option<u64>,
    /// Seconds between the starts of two bursts.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0, requires = "burst", value_parser = parse_seconds)]
    pub burst_interval: f64,
    /// The fraction of records (0 to 1) whose event time is up to 5 minutes in the past: late
    /// and out of order.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fraction)]
    pub late_fraction: f64,
    /// Seed of the random choices: the same seed gives the same sequence of records.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Partitions of the topics gen creates.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,
}

/// A `--rate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Records per second.
    PerSecond(f64),
    /// As fast as possible.
    Max,
}

fn parse_rate(s: &str) -> Result<Rate, String> {
    if s.eq_ignore_ascii_case("max") {
        return Ok(Rate::Max);
    }
    match s.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(Rate::PerSecond(rate)),
        _ => Err(format!(
            "expected a number of records per second above 0, or `max`; got `{s}`"
        )),
    }
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 => Ok(seconds),
        _ => Err(format!("expected a number of seconds above 0, got `{s}`")),
    }
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("expected a fraction from 0 to 1, got `{s}`")),
    }
}

impl GenArgs {
    /// The generator's options.
    pub fn options(&self) -> anyhow::Result<Options> {
        let pace = match (self.burst, self.rate) {
            (Some(size), _) => Pace::Burst {
                size,
                every: Duration::from_secs_f64(self.burst_interval),
            },
            (None, Some(Rate::PerSecond(rate))) => Pace::Rate(rate),
            (None, Some(Rate::Max)) => Pace::Max,
            (None, None) if self.count.is_some() => Pace::Max,
            // Seed 000's producer: one log a second.
            (None, None) => Pace::Rate(1.0),
        };
        let mut options = Options::new(self.scenario, pace);
        if let Some(topics) = &self.topics {
            let [first, second] = topics.as_slice() else {
                let [a, b] = self.scenario.default_topics();
                anyhow::bail!(
                    "--topics: give two topics, like `{a},{b}`; got {}",
                    topics.len()
                );
            };
            if first.is_empty() || second.is_empty() {
                anyhow::bail!("--topics: a topic name is empty");
            }
            options.topics = [first.clone(), second.clone()];
        }
        options.count = self.count;
        options.late_fraction = self.late_fraction;
        options.seed = self.seed;
        options.partitions = self.partitions;
        Ok(options)
    }
}

/// Runs `sluice gen`; returns the exit status.
pub fn run(args: GenArgs) -> anyhow::Result<i32> {
    let options = args.options()?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(stop.clone())?;
    tracing::info!(
        scenario = ?options.scenario,
        topics = %options.topics.join(","),
        pace = ?options.pace,
        count = ?options.count,
        "generating"
    );
    let summary = generator::run(&args.kafka.to_config()?, &options, &stop)?;
    let total: u64 = summary.delivered.iter().sum();
    eprintln!(
        "sent {total} records in {:.1} s: {} to {}, {} to {}",
        summary.elapsed.as_secs_f64(),
        summary.delivered[0],
        options.topics[0],
        summary.delivered[1],
        options.topics[1]
    );
    Ok(0)
}

/// Raises `stop` on SIGINT or SIGTERM, so that queued records are still delivered.
fn stop_on_signals(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    std::thread::Builder::new()
        .name("sluice-signals".into())
        .spawn(move || {
            runtime.block_on(async {
                let Ok(mut terminate) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    return;
                };
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                stop.store(true, Ordering::Relaxed);
            })
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: GenArgs,
    }

    fn options(args: &[&str]) -> anyhow::Result<Options> {
        let cli = Cli::try_parse_from(std::iter::once("gen").chain(args.iter().copied()))?;
        cli.args.options()
    }

    #[test]
    fn pace_follows_the_flags() {
        assert_eq!(options(&[]).unwrap().pace, Pace::Rate(1.0));
        assert_eq!(options(&["--count", "10"]).unwrap().pace, Pace::Max);
        assert_eq!(
            options(&["--count", "10", "--rate", "50"]).unwrap().pace,
            Pace::Rate(50.0)
        );
        assert_eq!(options(&["--rate", "MAX"]).unwrap().pace, Pace::Max);
        assert_eq!(
            options(&["--burst", "20", "--burst-interval", "0.5"])
                .unwrap()
                .pace,
            Pace::Burst {
                size: 20,
                every: Duration::from_millis(500)
            }
        );
    }

    #[test]
    fn bad_flags_are_refused_with_a_reason() {
        let error = |args: &[&str]| options(args).unwrap_err().to_string();
        assert!(error(&["--rate", "0"]).contains("above 0, or `max`"));
        assert!(error(&["--late-fraction", "1.5"]).contains("fraction from 0 to 1"));
        assert!(error(&["--burst", "5", "--rate", "3"]).contains("cannot be used with"));
        assert!(error(&["--topics", "a"]).contains("give two topics"));
        assert!(
            error(&["--scenario", "orders", "--topics", "a,b,c"]).contains("`customers,orders`")
        );
    }

    #[test]
    fn topics_override_the_scenarios() {
        assert_eq!(
            options(&["--scenario", "orders"]).unwrap().topics,
            ["customers", "orders"]
        );
        assert_eq!(
            options(&["--topics", "ny,paris"]).unwrap().topics,
            ["ny", "paris"]
        );
    }
}
