//! `sluice.toml`: what `sluice run` runs.
//!
//! ```toml
//! [kafka]                      # librdkafka properties, passed through verbatim to both clients
//! "bootstrap.servers" = "127.0.0.1:9092"
//!
//! [[pipeline]]
//! name = "unify"
//! inputs = ["timezone1", "timezone2"]
//! outputs = ["unified_timestamps"]
//! dead_letter = "unified_timestamps.dlq"
//!
//! [[pipeline.transform]]
//! module = "target/wasm32-wasip2/release/tz_normaliser.wasm"
//! config = { field = "date" }
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// librdkafka properties for every client, passed through verbatim. The tables `consumer`
    /// and `producer` inside it hold properties for one kind of client only.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// The pipelines to run; at least one.
    #[serde(default)]
    pub pipeline: Vec<PipelineConfig>,
    /// Sandbox limits for every transform instance.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The HTTP endpoint: health, readiness, metrics.
    #[serde(default)]
    pub api: ApiConfig,
    /// How long a graceful stop (SIGTERM, SIGINT) may take before the process exits anyway.
    #[serde(default = "defaults::shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// Where uploaded modules and deployments are kept, relative to the file's folder;
    /// `sluice-state` beside the file by default.
    pub state_dir: Option<PathBuf>,
}

/// librdkafka properties. Every key other than `consumer` and `producer` is a property.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct KafkaConfig {
    /// Properties for the consumers only (e.g. `"fetch.max.bytes"`).
    #[serde(default)]
    pub consumer: BTreeMap<String, Scalar>,
    /// Properties for the producer only (e.g. `"compression.type"`).
    #[serde(default)]
    pub producer: BTreeMap<String, Scalar>,
    /// Properties for every client (e.g. `"bootstrap.servers"`, `"security.protocol"`).
    #[serde(flatten)]
    pub common: BTreeMap<String, Scalar>,
}

/// A configuration value that librdkafka or a transform reads as a string: TOML strings,
/// integers, floats and booleans are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(d)? {
            toml::Value::String(s) => Ok(Scalar(s)),
            toml::Value::Integer(i) => Ok(Scalar(i.to_string())),
            toml::Value::Float(f) => Ok(Scalar(f.to_string())),
            toml::Value::Boolean(b) => Ok(Scalar(b.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "expected a string, number or boolean, found {}",
                other.type_str()
            ))),
        }
    }
}

/// Where a new consumer group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// From the oldest record still on the broker.
    #[default]
    Earliest,
    /// From records produced after the group first joins.
    Latest,
}

/// What to do with a record whose transform fails when the pipeline has no `dead_letter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Stop the pipeline before committing the record, so that nothing is lost.
    #[default]
    Stop,
    /// Skip the record with a log line and a counter.
    Skip,
}

/// One pipeline: inputs, a chain of transforms, outputs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// A unique name, used in logs, metrics and the default consumer group `sluice-<name>`.
    pub name: String,
    /// Topics to consume; their records are merged.
    pub inputs: Vec<String>,
    /// Topics the transforms may write to; the first is the default.
    pub outputs: Vec<String>,
    /// Topic for records whose transform fails, with the error in headers.
    pub dead_letter: Option<String>,
    /// Without `dead_letter`: `stop` (the default) or `skip` failed records.
    #[serde(default)]
    pub on_error: OnError,
    /// Where a new consumer group starts: `earliest` (the default) or `latest`.
    #[serde(default)]
    pub start: Start,
    /// Consumer group id; `sluice-<name>` by default.
    pub group_id: Option<String>,
    /// Most records per call into a transform.
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// Longest a record waits for its batch to fill, in milliseconds.
    #[serde(default = "defaults::linger_ms")]
    pub linger_ms: u64,
    /// Cap on records consumed per second by this pipeline, across its partitions.
    pub max_records_per_second: Option<u64>,
    /// The chain of transforms; each one's outputs feed the next. Empty copies records as they
    /// are.
    #[serde(default)]
    pub transform: Vec<TransformConfig>,
    /// Lookup tables the transforms may read.
    #[serde(default)]
    pub table: Vec<TableConfig>,
}

/// A lookup table: the latest value per key of a topic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// The name transforms look it up by.
    pub name: String,
    /// The topic that feeds it (compacted, typically): latest value per key, tombstones delete.
    pub topic: String,
    /// The most memory it may use, in MiB; past it the pipeline stops with an error.
    #[serde(default = "defaults::table_max_mb")]
    pub max_mb: u32,
}

/// One transform of a chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// Path of the `.wasm` component, relative to the configuration file.
    pub module: PathBuf,
    /// Key/value configuration passed to the transform's `init`.
    #[serde(default)]
    pub config: BTreeMap<String, Scalar>,
}

/// The HTTP endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on; loopback unless a token is set. Port 0 picks a free port.
    #[serde(default = "defaults::listen")]
    pub listen: std::net::SocketAddr,
    /// Bearer token required by routes that change anything; required to listen beyond loopback.
    pub token: Option<String>,
    /// Largest module the API accepts for upload, in MiB.
    #[serde(default = "defaults::max_module_mb")]
    pub max_module_mb: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: defaults::listen(),
            token: None,
            max_module_mb: defaults::max_module_mb(),
        }
    }
}

/// Sandbox limits for transform instances.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest memory an instance may use, in MiB.
    #[serde(default = "defaults::memory_mb")]
    pub memory_mb: u32,
    /// Longest one call (one batch) may run, in milliseconds.
    #[serde(default = "defaults::cpu_budget_ms")]
    pub cpu_budget_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            memory_mb: defaults::memory_mb(),
            cpu_budget_ms: defaults::cpu_budget_ms(),
        }
    }
}

mod defaults {
    pub fn shutdown_timeout_ms() -> u64 {
        30_000
    }
    pub fn batch_size() -> usize {
        1024
    }
    pub fn linger_ms() -> u64 {
        20
    }
    pub fn memory_mb() -> u32 {
        64
    }
    pub fn cpu_budget_ms() -> u64 {
        2_000
    }
    pub fn listen() -> std::net::SocketAddr {
        ([127, 0, 0, 1], 8080).into()
    }
    pub fn table_max_mb() -> u32 {
        64
    }
    pub fn max_module_mb() -> u32 {
        64
    }
}

impl Config {
    /// Reads and checks a configuration file. Module paths are made relative to its folder.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read configuration {}: {e}", path.display()))?;
        let mut config =
            Config::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.state_dir = Some(
            base.join(
                config
                    .state_dir
                    .as_deref()
                    .unwrap_or(Path::new("sluice-state")),
            ),
        );
        for pipeline in &mut config.pipeline {
            for transform in &mut pipeline.transform {
                if transform.module.is_relative() {
                    transform.module = base.join(&transform.module);
                }
            }
        }
        Ok(config)
    }

    /// Applies settings from the environment and flags, which win over the file, and checks
    /// the result again.
    pub fn apply(&mut self, overrides: Overrides) -> Result<(), String> {
        for (key, value) in overrides.kafka {
            self.kafka.common.insert(key, Scalar(value));
        }
        if let Some(servers) = overrides.bootstrap_servers {
            self.kafka
                .common
                .insert("bootstrap.servers".into(), Scalar(servers));
        }
        if let Some(listen) = overrides.listen {
            self.api.listen = listen;
        }
        if overrides.token.is_some() {
            self.api.token = overrides.token;
        }
        if overrides.state_dir.is_some() {
            self.state_dir = overrides.state_dir;
        }
        self.check()
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config =
            toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if self.pipeline.is_empty() {
            return Err("no [[pipeline]] is configured: add at least one".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in self.pipeline.iter().enumerate() {
            let at = format!("pipeline[{i}] ({})", p.name);
            if p.name.is_empty()
                || !p
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(format!(
                    "pipeline[{i}].name `{}`: use letters, digits, `-`, `_` and `.` only",
                    p.name
                ));
            }
            if !names.insert(&p.name) {
                return Err(format!(
                    "{at}.name: another pipeline is already called `{}`",
                    p.name
                ));
            }
            if p.inputs.is_empty() {
                return Err(format!("{at}.inputs: list at least one topic to consume"));
            }
            if p.outputs.is_empty() {
                return Err(format!("{at}.outputs: list at least one topic to write to"));
            }
            for topic in p.inputs.iter().chain(&p.outputs).chain(&p.dead_letter) {
                check_topic(topic).map_err(|e| format!("{at}: topic `{topic}`: {e}"))?;
            }
            if let Some(topic) = p
                .outputs
                .iter()
                .chain(&p.dead_letter)
                .find(|t| p.inputs.contains(t))
            {
                return Err(format!(
                    "{at}: `{topic}` is both an input and an output, which would loop forever"
                ));
            }
            if p.batch_size == 0 || p.batch_size > 100_000 {
                return Err(format!(
                    "{at}.batch_size: {} is out of range 1..=100000",
                    p.batch_size
                ));
            }
            let mut tables = std::collections::HashSet::new();
            for (t, table) in p.table.iter().enumerate() {
                if table.name.is_empty() || !tables.insert(&table.name) {
                    return Err(format!(
                        "{at}.table[{t}].name: `{}` is empty or declared twice",
                        table.name
                    ));
                }
                check_topic(&table.topic)
                    .map_err(|e| format!("{at}.table[{t}].topic `{}`: {e}", table.topic))?;
                if table.max_mb == 0 {
                    return Err(format!("{at}.table[{t}].max_mb: must be at least 1"));
                }
            }
            if p.max_records_per_second == Some(0) {
                return Err(format!(
                    "{at}.max_records_per_second: must be at least 1 (omit it for no limit)"
                ));
            }
        }
        if !self.api.listen.ip().is_loopback() && self.api.token.as_deref().unwrap_or("").is_empty()
        {
            return Err(format!(
                "api.listen: {} is not a loopback address; set api.token so that only holders of it can change pipelines",
                self.api.listen
            ));
        }
        if self.api.max_module_mb == 0 {
            return Err("api.max_module_mb: must be at least 1".into());
        }
        if self.limits.memory_mb == 0 || self.limits.cpu_budget_ms == 0 {
            return Err("limits: memory_mb and cpu_budget_ms must be positive".into());
        }
        Ok(())
    }
}

/// Settings that win over the file: from flags, or from the environment.
#[derive(Debug, Default)]
pub struct Overrides {
    /// `bootstrap.servers`.
    pub bootstrap_servers: Option<String>,
    /// `[api] listen`.
    pub listen: Option<std::net::SocketAddr>,
    /// `[api] token`.
    pub token: Option<String>,
    /// `state_dir`.
    pub state_dir: Option<PathBuf>,
    /// librdkafka properties for every client.
    pub kafka: Vec<(String, String)>,
}

/// librdkafka properties from environment variables: `SLUICE_KAFKA_SASL_PASSWORD=x` sets
/// `sasl.password` (property names are lower case with dots, so `_` stands for `.`). Keeps
/// secrets out of configuration files.
pub fn kafka_from_env(vars: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    vars.into_iter()
        .filter_map(|(name, value)| {
            let property = name.strip_prefix("SLUICE_KAFKA_")?;
            (!property.is_empty()).then(|| (property.to_ascii_lowercase().replace('_', "."), value))
        })
        .collect()
}

/// Kafka's own rules for topic names.
fn check_topic(topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() || topic.len() > 249 {
        return Err("names are 1 to 249 characters long");
    }
    if topic == "." || topic == ".." {
        return Err("`.` and `..` are not valid names");
    }
    if !topic
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err("names use letters, digits, `.`, `_` and `-` only");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [kafka]
        "bootstrap.servers" = "127.0.0.1:9092"
        "session.timeout.ms" = 6000
        [kafka.producer]
        "compression.type" = "zstd"

        [[pipeline]]
        name = "unify"
        inputs = ["timezone1", "timezone2"]
        outputs = ["unified_timestamps"]
        dead_letter = "unified_timestamps.dlq"

        [[pipeline.transform]]
        module = "tz.wasm"
        config = { field = "date", strict = true }
    "#;

    #[test]
    fn the_documented_shape_parses() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.kafka.common["bootstrap.servers"].0, "127.0.0.1:9092");
        assert_eq!(c.kafka.common["session.timeout.ms"].0, "6000");
        assert_eq!(c.kafka.producer["compression.type"].0, "zstd");
        let p = &c.pipeline[0];
        assert_eq!(
            (p.start, p.on_error, p.batch_size),
            (Start::Earliest, OnError::Stop, 1024)
        );
        assert_eq!(p.transform[0].config["strict"].0, "true");
    }

    fn error(text: &str) -> String {
        Config::parse(text).unwrap_err()
    }

    #[test]
    fn the_environment_and_flags_win_over_the_file() {
        let vars = [
            ("SLUICE_KAFKA_SASL_PASSWORD", "s3cret"),
            ("SLUICE_KAFKA_", "x"),
            ("HOME", "/root"),
        ];
        let kafka = kafka_from_env(vars.map(|(k, v)| (k.to_string(), v.to_string())));
        assert_eq!(kafka, [("sasl.password".to_string(), "s3cret".to_string())]);
        let mut c = Config::parse(MINIMAL).unwrap();
        let overrides = Overrides {
            kafka,
            bootstrap_servers: Some("b:9092".into()),
            ..Default::default()
        };
        c.apply(overrides).unwrap();
        assert_eq!(
            (
                c.kafka.common["sasl.password"].0.as_str(),
                c.kafka.common["bootstrap.servers"].0.as_str()
            ),
            ("s3cret", "b:9092")
        );
        let public = Overrides {
            listen: Some("0.0.0.0:8080".parse().unwrap()),
            ..Default::default()
        };
        assert!(
            c.apply(public)
                .unwrap_err()
                .starts_with("api.listen: 0.0.0.0:8080 is not a loopback address; set api.token")
        );
        let with_token = Overrides {
            token: Some("t".into()),
            ..Default::default()
        };
        c.apply(with_token).unwrap();
    }

    #[test]
    fn mistakes_are_named() {
        let typo = MINIMAL.replace("dead_letter", "dead_leter");
        assert!(
            error(&typo).contains("unknown field `dead_leter`"),
            "{}",
            error(&typo)
        );
        let start = MINIMAL.replace(
            "name = \"unify\"",
            "name = \"unify\"\nstart = \"beginning\"",
        );
        assert!(
            error(&start).contains("unknown variant `beginning`, expected `earliest` or `latest`")
        );
        let table = MINIMAL.replace("strict = true", "strict = [1]");
        assert!(
            error(&table).contains("expected a string, number or boolean, found array"),
            "{}",
            error(&table)
        );
        let looping = MINIMAL.replace("[\"unified_timestamps\"]", "[\"timezone1\"]");
        assert_eq!(
            error(&looping),
            "pipeline[0] (unify): `timezone1` is both an input and an output, which would loop forever"
        );
        let bad_topic = MINIMAL.replace("timezone2", "time zone");
        assert_eq!(
            error(&bad_topic),
            "pipeline[0] (unify): topic `time zone`: names use letters, digits, `.`, `_` and `-` only"
        );
        assert_eq!(
            error("[kafka]\n"),
            "no [[pipeline]] is configured: add at least one"
        );
        let no_inputs = MINIMAL.replace("[\"timezone1\", \"timezone2\"]", "[]");
        assert_eq!(
            error(&no_inputs),
            "pipeline[0] (unify).inputs: list at least one topic to consume"
        );
        let twice = format!(
            "{MINIMAL}\n[[pipeline]]\nname = \"unify\"\ninputs = [\"a\"]\noutputs = [\"b\"]\n"
        );
        assert_eq!(
            error(&twice),
            "pipeline[1] (unify).name: another pipeline is already called `unify`"
        );
    }
}
