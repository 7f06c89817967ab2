//! `make bench-fleet`: one pipeline (the tz normaliser over 12 partitions of preloaded seed-000
//! records) run by a fleet of 1, 2 and 3 `sluice run` processes on this machine, each with its
//! own `state_dir` and API port, as a user would run sidecars.
//!
//! The fleet starts with the pipeline paused (through the API, so every member pauses), waits
//! until the group has spread the partitions over every member (their heartbeats say so), then
//! resumes it: the rate counts the records written from the resume to the last output, so group
//! joins and rebalances are left out and the figure is the fleet's steady processing rate.
//! Rounds are interleaved (1, 2, 3, 1, 2, 3, ...) and the median is reported, with each fleet's
//! rate as a ratio of one member's.

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 12;
const ROUNDS: usize = 3;

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

fn create_topic(bootstrap: &str, topic: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create()?;
    let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for result in runtime.block_on(admin.create_topics([&new], &AdminOptions::new()))? {
        result.map_err(|(topic, e)| anyhow::anyhow!("cannot create {topic}: {e}"))?;
    }
    Ok(())
}

/// Writes `records` to `topic`, spread over its partitions, and waits for the broker.
fn preload(bootstrap: &str, topic: &str, records: &[Vec<u8>]) -> Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = client(bootstrap)
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    for (i, value) in records.iter().enumerate() {
        let partition = (i % PARTITIONS as usize) as i32;
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .payload(value)
            .partition(partition);
        while let Err((_, returned)) = producer.send(record) {
            record = returned;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

/// Records on `topic`: the sum of its partitions' high watermarks.
fn count(consumer: &BaseConsumer, topic: &str) -> i64 {
    (0..PARTITIONS)
        .map(|p| {
            (consumer.fetch_watermarks(topic, p, Duration::from_secs(5)))
                .map_or(0, |(_, high)| high)
        })
        .sum()
}

/// A `sluice run` process, killed when dropped.
struct Member {
    child: Child,
    log: PathBuf,
    api: Option<String>,
}

impl Member {
    fn start(config: &Path, dir: &Path, index: usize) -> Result<Member> {
        let sluice = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/sluice");
        let state = dir.join(format!("member-{index}"));
        let log = dir.join(format!("member-{index}.log"));
        let child = Command::new(&sluice)
            .args(["run", "--config"])
            .arg(config)
            .arg("--state-dir")
            .arg(&state)
            .env("SLUICE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("{} (run `make bench-fleet`)", sluice.display()))?;
        Ok(Member {
            child,
            log,
            api: None,
        })
    }

    /// The API's address, from the log line that announces it.
    fn api(&mut self, deadline: Instant) -> Result<String> {
        while self.api.is_none() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let found = (log.lines())
                .filter(|l| l.contains("api listening"))
                .find_map(|l| l.split("address=").nth(1))
                .map(|a| a.split_whitespace().next().unwrap_or_default().to_string());
            if let Some(address) = found {
                self.api = Some(format!("http://{address}"));
            } else if let Some(status) = self.child.try_wait()? {
                bail!("a member exited ({status}):\n{log}");
            } else if Instant::now() > deadline {
                bail!("a member did not start listening:\n{log}");
            } else {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(self.api.clone().unwrap_or_default())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(url: &str) -> Result<serde_json::Value> {
    let mut response = ureq::get(url).call()?;
    Ok(serde_json::from_str(
        &response.body_mut().read_to_string()?,
    )?)
}

fn post(url: &str) -> Result<()> {
    ureq::post(url).send_empty()?;
    Ok(())
}

/// Waits until `check` holds, or fails saying `what`.
fn until(what: &str, deadline: Instant, mut check: impl FnMut() -> bool) -> Result<()> {
    while !check() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Whether the fleet view shows `members` live members, all paused or all running, holding
/// every partition between them, with at least one each.
fn spread(api: &str, members: usize, paused: bool) -> bool {
    let Ok(fleet) = get(&format!("{api}/api/v1/fleet")) else {
        return false;
    };
    let live: Vec<&serde_json::Value> = (fleet["members"].as_array().into_iter().flatten())
        .filter(|m| m["alive"] == true)
        .collect();
    let status = if paused { "paused" } else { "running" };
    let held: Vec<usize> = (live.iter())
        .map(|m| {
            m["pipelines"][0]["partitions"]
                .as_array()
                .map_or(0, Vec::len)
        })
        .collect();
    live.len() == members
        && live.iter().all(|m| m["pipelines"][0]["status"] == status)
        && held.iter().all(|&n| n > 0)
        && held.iter().sum::<usize>() == PARTITIONS as usize
}

/// One fleet of `members` over `input`: records per second from the resume to the last output.
fn run_fleet(bootstrap: &str, input: &str, n: i64, members: usize, round: usize) -> Result<f64> {
    let id = format!("{}-{members}-{round}", std::process::id());
    let output = format!("fleet-bench-out-{id}");
    create_topic(bootstrap, &output)?;
    let dir = std::env::temp_dir().join(format!("sluice-bench-fleet-{id}"));
    std::fs::create_dir_all(&dir)?;
    let tz = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/release/tz_normaliser.wasm");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\n\"bootstrap.servers\" = \"{bootstrap}\"\n\"session.timeout.ms\" = 6000\n\n\
             [api]\nlisten = \"127.0.0.1:0\"\n\n[fleet]\nname = \"bench-{id}\"\n\n\
             [[pipeline]]\nname = \"tz\"\ngroup_id = \"fleet-bench-{id}\"\ninputs = [\"{input}\"]\n\
             outputs = [\"{output}\"]\nstart = \"earliest\"\n\n\
             [[pipeline.transform]]\nmodule = \"{}\"\n",
            tz.display()
        ),
    )?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut fleet = vec![Member::start(&config, &dir, 0)?];
    let first = fleet[0].api(deadline)?;
    // Paused fleet-wide before the others join, so that they all start paused.
    until("the pause to be accepted", deadline, || {
        post(&format!("{first}/api/v1/pipelines/tz/pause")).is_ok()
    })?;
    for index in 1..members {
        fleet.push(Member::start(&config, &dir, index)?);
    }
    for member in &mut fleet {
        member.api(deadline)?;
    }
    until("the partitions spread over every member", deadline, || {
        spread(&first, members, true)
    })?;
    let watcher: BaseConsumer = client(bootstrap).create()?;
    let before = count(&watcher, &output);
    let started = Instant::now();
    post(&format!("{first}/api/v1/pipelines/tz/resume"))?;
    let deadline = Instant::now() + Duration::from_secs(600);
    until(&format!("{n} outputs on {output}"), deadline, || {
        count(&watcher, &output) >= n
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    // Still spread: no member left during the measurement.
    anyhow::ensure!(
        spread(&first, members, false),
        "the fleet of {members} changed during the measurement"
    );
    drop(fleet);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((n - before) as f64 / elapsed)
}

/// Runs the fleet benchmark; prints a table and returns the figures.
pub fn run(bootstrap: &str, records: &[Vec<u8>]) -> Result<serde_json::Value> {
    let n = records.len() as i64;
    let input = format!("fleet-bench-in-{}", std::process::id());
    create_topic(bootstrap, &input)?;
    preload(bootstrap, &input, records)?;
    println!(
        "\nFleet: the tz normaliser over {PARTITIONS} partitions, {n} records, {} cores; {ROUNDS} rounds, median",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut rates = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        for (i, members) in [1, 2, 3].into_iter().enumerate() {
            let rate = run_fleet(bootstrap, &input, n, members, round)?;
            println!("    round {round}: {members} member(s): {rate:>9.0} records/s");
            rates[i].push(rate);
        }
    }
    let medians: Vec<f64> = rates.into_iter().map(crate::median).collect();
    let mut result = serde_json::Map::new();
    for (i, rate) in medians.iter().enumerate() {
        let ratio = rate / medians[0];
        println!(
            "    {} member(s): {rate:>9.0} records/s, {ratio:.2}x one member",
            i + 1
        );
        result.insert(
            format!("members_{}_records_per_s", i + 1),
            rate.round().into(),
        );
        result.insert(
            format!("members_{}_ratio", i + 1),
            ((ratio * 100.0).round() / 100.0).into(),
        );
    }
    Ok(result.into())
}
