//! A real Kafka broker for tests (started by `tests/with-kafka.sh`), driven with kcat, and a
//! `sluice run` process to test against it.

use super::{poll, sluice};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::Duration;

/// The broker's address.
pub fn bootstrap() -> String {
    std::env::var("SLUICE_TEST_KAFKA")
        .expect("SLUICE_TEST_KAFKA is not set: run these tests with `make test` or `tests/with-kafka.sh cargo test`")
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Creates `topic` with `partitions` partitions.
pub fn create_topic(topic: &str, partitions: u32) {
    // The admin tool is a JVM that can time out on a loaded machine: try a few times.
    let created = (0..3).any(|_| {
        std::process::Command::new("bash")
            .arg(super::repo().join("tests/kafka/broker.sh"))
            .args(["topic-create", topic, &partitions.to_string()])
            .status()
            .unwrap()
            .success()
    });
    assert!(created, "cannot create topic {topic}");
}

/// Produces one record per value to `topic`, with kcat, on random partitions.
pub fn produce(topic: &str, values: &[String]) {
    let mut kcat = std::process::Command::new("kcat")
        .args(["-P", "-b", &bootstrap(), "-t", topic, "-z", "lz4"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kcat is installed by tests/setup.sh");
    {
        let mut stdin = std::io::BufWriter::new(kcat.stdin.take().unwrap());
        for v in values {
            stdin.write_all(v.as_bytes()).unwrap();
            stdin.write_all(b"\n").unwrap();
        }
    }
    assert!(
        kcat.wait().unwrap().success(),
        "kcat could not produce to {topic}"
    );
}

/// Produces keyed records to `topic`; a `None` value is a tombstone.
pub fn produce_keyed(topic: &str, records: &[(&str, Option<&str>)]) {
    let mut kcat = std::process::Command::new("kcat")
        .args(["-P", "-b", &bootstrap(), "-t", topic, "-K", "\t", "-Z"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kcat is installed by tests/setup.sh");
    {
        let mut stdin = std::io::BufWriter::new(kcat.stdin.take().unwrap());
        for (key, value) in records {
            writeln!(stdin, "{key}\t{}", value.unwrap_or("")).unwrap();
        }
    }
    assert!(
        kcat.wait().unwrap().success(),
        "kcat could not produce to {topic}"
    );
}

/// A record read back with kcat.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: String,
    pub headers: BTreeMap<String, String>,
}

/// kcat's output for all of `topic` now, read from the beginning, one line per record as
/// `format` (a kcat `-f` format) or as JSON (`None`).
fn kcat_all(topic: &str, format: Option<&str>) -> String {
    let bootstrap = bootstrap();
    let mut args = vec![
        "-C",
        "-b",
        &bootstrap,
        "-t",
        topic,
        "-o",
        "beginning",
        "-e",
        "-q",
    ];
    match format {
        Some(format) => args.extend(["-f", format]),
        None => args.push("-J"),
    }
    let out = std::process::Command::new("kcat")
        .args(args)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// Everything in `topic` now.
pub fn consume(topic: &str) -> Vec<Consumed> {
    kcat_all(topic, None)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let headers = v["headers"]
                .as_array()
                .map(|h| {
                    h.chunks(2)
                        .map(|kv| {
                            (
                                kv[0].as_str().unwrap().to_string(),
                                kv[1].as_str().unwrap_or("").to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            Consumed {
                partition: v["partition"].as_i64().unwrap() as i32,
                offset: v["offset"].as_i64().unwrap(),
                key: v["key"].as_str().map(str::to_string),
                value: v["payload"].as_str().unwrap_or("").to_string(),
                headers,
            }
        })
        .collect()
}

/// Every value in `topic` now, in partition order (values only: much faster than `consume`).
pub fn consume_values(topic: &str) -> Vec<String> {
    kcat_all(topic, Some("%s\n"))
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// How many records `topic` holds: the sum of its partitions' high watermarks (cheap, unlike
/// reading it).
pub fn count(topic: &str) -> usize {
    let kcat = |args: &[&str]| {
        let out = std::process::Command::new("kcat")
            .args(args)
            .stderr(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let metadata: serde_json::Value =
        serde_json::from_str(&kcat(&["-L", "-J", "-b", &bootstrap(), "-t", topic]))
            .unwrap_or_default();
    let partitions: Vec<String> = metadata["topics"][0]["partitions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| format!("{topic}:{}:-1", p["partition"]))
                .collect()
        })
        .unwrap_or_default();
    if partitions.is_empty() {
        return 0;
    }
    let mut args = vec!["-Q", "-b"];
    let address = bootstrap();
    args.push(&address);
    for p in &partitions {
        args.extend(["-t", p.as_str()]);
    }
    // Lines of the form `topic [partition] offset N`.
    kcat(&args)
        .lines()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<usize>().ok())
        .sum()
}

/// Waits until `topic` holds at least `n` records (or `timeout` passes); how many it holds.
/// Unlike consuming, this returns at once while records keep arriving.
pub fn wait_for_count(topic: &str, n: usize, timeout: Duration) -> usize {
    poll(timeout, || Some(count(topic)).filter(|&held| held >= n)).unwrap_or_else(|| count(topic))
}

/// Consumes `topic` once it holds at least `count` records, or when `timeout` passes. While
/// records keep arriving, kcat reads until it catches up with every partition at once.
pub fn consume_at_least(topic: &str, count: usize, timeout: Duration) -> Vec<Consumed> {
    wait_for_count(topic, count, timeout);
    consume(topic)
}

/// A `sluice run` process, killed if the test ends without stopping it.
pub struct Sluice {
    child: Child,
    pub log: PathBuf,
}

impl Sluice {
    /// Starts `sluice run --config <config>`, logging to a file beside the config.
    pub fn start(config: &Path) -> Sluice {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = config.with_extension(format!("{n}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = sluice()
            .args(["run", "--config"])
            .arg(config)
            // SLUICE_TEST_LOG sets a finer filter when a test needs looking into.
            .env(
                "SLUICE_LOG",
                std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Sluice { child, log }
    }

    /// Sends `signal` (e.g. "TERM", "KILL").
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
        assert!(status.unwrap().success());
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        super::wait_for_exit(&mut self.child, timeout)
    }

    /// Waits until `condition` holds; panics saying `what` was not reached, with the log.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
        if poll(timeout, || condition().then_some(())).is_none() {
            panic!(
                "not reached within {timeout:?}: {what}; log:\n{}",
                self.log()
            );
        }
    }

    /// Every thread's stack, when the process still runs and gdb is installed (for a test that
    /// timed out: where a process that stopped making progress is waiting); empty otherwise.
    pub fn stacks(&self) -> String {
        let pid = self.child.id().to_string();
        if !Path::new("/proc").join(&pid).exists() {
            return String::new();
        }
        let gdb = std::process::Command::new("timeout")
            .args([
                "30",
                "gdb",
                "-p",
                &pid,
                "-batch",
                "-ex",
                "thread apply all bt",
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output();
        gdb.map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address its API listens on, once it has logged it.
    pub fn api_address(&self) -> String {
        poll(Duration::from_secs(60), || {
            let log = self.log();
            let line = log.lines().find(|l| l.contains("api listening"))?;
            let address = line.split("address=").nth(1)?.split_whitespace().next()?;
            Some(
                address
                    .trim_matches(|c: char| !c.is_ascii_digit())
                    .to_string(),
            )
        })
        .unwrap_or_else(|| panic!("no api address in the log:\n{}", self.log()))
    }

    /// GETs `path` from its API: status code and body.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        self.http("GET", path, b"")
    }

    /// Sends `method path` with `body` to its API: status code and body.
    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        super::http::send(
            method,
            &format!("http://{}{path}", self.api_address()),
            body,
        )
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a configuration file for one pipeline into a fresh temporary folder.
pub fn write_config(dir: &Path, body: &str) -> PathBuf {
    write_config_with_api(dir, "", body)
}

/// [`write_config`] with more `[api]` settings (`token = "..."` lines).
pub fn write_config_with_api(dir: &Path, api: &str, body: &str) -> PathBuf {
    let path = dir.join("sluice.toml");
    // Port 0: tests run several instances at once; each logs the address it got.
    let text = format!(
        "[api]\nlisten = \"127.0.0.1:0\"\n{api}\n[kafka]\n\"bootstrap.servers\" = \"{}\"\n\n{body}",
        bootstrap()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A `[[pipeline]]` table: `name` copies `input` to `output` through the test guest.
pub fn test_guest_pipeline(name: &str, input: &str, output: &str) -> String {
    format!(
        "[[pipeline]]\nname = \"{name}\"\ninputs = [\"{input}\"]\noutputs = [\"{output}\"]\n\n\
         [[pipeline.transform]]\nmodule = {:?}\n",
        super::wasm("test_guest")
    )
}

/// The names of every topic on the broker. Asks for all topics rather than one by name, which
/// could create it on a broker that creates topics on first use.
pub fn topics() -> Vec<String> {
    let out = std::process::Command::new("kcat")
        .args(["-L", "-J", "-b", &bootstrap()])
        .stderr(Stdio::null())
        .output()
        .expect("kcat is installed by tests/setup.sh");
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    metadata["topics"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t["topic"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A broker of one test's own, apart from the shared one, started by `tests/kafka/broker.sh
/// start` with `env` (e.g. `SLUICE_BROKER_SASL_USER`) and stopped when dropped.
pub struct OwnBroker {
    /// Its state folder.
    pub dir: PathBuf,
}

impl OwnBroker {
    /// Starts a fresh broker; returns once it serves.
    pub fn start(env: &[(&str, &str)]) -> OwnBroker {
        let dir = super::repo().join(".cache/kafka").join(unique("test"));
        let broker = OwnBroker { dir };
        let status = std::process::Command::new("bash")
            .arg(super::repo().join("tests/kafka/broker.sh"))
            .arg("start")
            .arg(&broker.dir)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cannot start a broker in {:?}",
            broker.dir
        );
        broker
    }

    /// Runs `broker.sh COMMAND ARGS... DIR` on this broker.
    pub fn run(&self, command: &str, args: &[&str]) {
        let status = std::process::Command::new("bash")
            .arg(super::repo().join("tests/kafka/broker.sh"))
            .arg(command)
            .args(args)
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(status.success(), "broker.sh {command} {args:?} failed");
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(super::repo().join("tests/kafka/broker.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
