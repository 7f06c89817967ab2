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

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use utoipa::ToSchema;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// librdkafka properties for every client, passed through verbatim. The tables `consumer`
    /// and `producer` inside it hold properties for one kind of client only.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// The pipelines to apply at start (see `sluice run`); none is fine: pipelines can be
    /// created through the API.
    #[serde(default)]
    pub pipeline: Vec<PipelineConfig>,
    /// Sandbox limits for every transform instance.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The HTTP endpoint: health, readiness, metrics.
    #[serde(default)]
    pub api: ApiConfig,
    /// How long a graceful stop (SIGTERM, SIGINT) may take before the process exits anyway;
    /// also how long a partition's worker may take to drain (finish its batches and have their
    /// outputs acknowledged) when its partition is revoked.
    #[serde(default = "defaults::shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// Where uploaded modules and deployments are kept, relative to the file's folder;
    /// `sluice-state` beside the file by default. In a fleet, a cache.
    pub state_dir: Option<PathBuf>,
    /// With this table, the members started with this configuration share one control plane
    /// kept in Kafka topics; without it, this member keeps modules and deployments in
    /// `state_dir` alone.
    pub fleet: Option<FleetConfig>,
}

/// A fleet of members sharing modules and deployments through Kafka topics
/// (`_sluice.<name>.modules`, `_sluice.<name>.deployments`, `_sluice.<name>.status`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// Separates fleets on one cluster; `sluice` by default.
    #[serde(default = "defaults::fleet_name")]
    pub name: String,
    /// Replication factor of the fleet's topics when they are created; the smaller of 3 and
    /// the number of brokers by default.
    pub replication_factor: Option<i32>,
    /// The URL at which other members' users reach this member's dashboard and API, as the
    /// Fleet view links it (behind NAT or a proxy); by default `http://` and `[api] listen`,
    /// with the host's name for an address on every interface.
    pub advertised_url: Option<String>,
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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[schema(value_type = String)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(d)? {
            toml::Value::String(s) => Ok(Scalar(s)),
            toml::Value::Integer(i) => Ok(Scalar(i.to_string())),
            toml::Value::Float(f) => Ok(Scalar(f.to_string())),
            toml::Value::Boolean(b) => Ok(Scalar(b.to_string())),
            // JSON numbers read through `toml::Value` come as one of the above; anything else
            // (an array, a table) is refused.
            other => Err(serde::de::Error::custom(format!(
                "expected a string, number or boolean, found {}",
                other.type_str()
            ))),
        }
    }
}

/// `pairs` as configuration values.
pub fn scalars(pairs: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, Scalar> {
    pairs.into_iter().map(|(k, v)| (k, Scalar(v))).collect()
}

/// Where a new consumer group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// From the oldest record still on the broker.
    #[default]
    Earliest,
    /// From records produced after the group first joins.
    Latest,
}

/// What to do with a record whose transform fails when the pipeline has no `dead_letter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Stop the pipeline before committing the record, so that nothing is lost.
    #[default]
    Stop,
    /// Skip the record with a log line and a counter.
    Skip,
}

/// What a pipeline promises about its outputs when Sluice or the broker fails.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// Every input record's outputs are written at least once: after a crash, the records
    /// since the last commit (about a second) are processed again.
    #[default]
    AtLeastOnce,
    /// Outputs, dead letters and input offsets are committed together in one Kafka
    /// transaction per `commit_interval_ms`: readers with `isolation.level=read_committed`
    /// see every input record's outputs exactly once.
    ExactlyOnce,
}

impl Guarantee {
    /// The name used in the file, the API and the dashboard.
    pub fn as_str(self) -> &'static str {
        match self {
            Guarantee::AtLeastOnce => "at-least-once",
            Guarantee::ExactlyOnce => "exactly-once",
        }
    }
}

/// One pipeline: inputs, a chain of transforms, outputs. The same shape is a `[[pipeline]]` of
/// `sluice.toml`, the body of `PUT /api/v1/pipelines/{pipeline}`, and what the API shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PipelineDefinition)]
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
    /// Longest a record waits for its batch to fill, in milliseconds. A batch does not wait
    /// once the consumer has handed over everything it has fetched and the partition's worker
    /// has taken every batch before it.
    #[serde(default = "defaults::linger_ms")]
    pub linger_ms: u64,
    /// Most bytes (keys, values and headers) per call into a transform; an eighth of
    /// `limits.memory_mb` by default, so that a batch, its outputs and the transform's own
    /// working memory fit under the cap. A single record larger than this goes to the
    /// dead-letter topic with kind `too_large` instead of trapping the transform.
    pub batch_max_bytes: Option<usize>,
    /// `at-least-once` (the default) or `exactly-once`.
    #[serde(default)]
    pub guarantee: Guarantee,
    /// With `exactly-once`: how often a transaction commits, in milliseconds. Outputs become
    /// visible to read_committed readers when their transaction commits.
    #[serde(default = "defaults::commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// Stateful transforms: after this many milliseconds without a record for a task (a
    /// partition number), its stream time moves on by the wall clock (about once a second), so
    /// that its windows close and its timers fire without new input. Off by default: stream
    /// time then moves only with records' event times.
    pub idle_timeout_ms: Option<u64>,
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

impl PipelineConfig {
    /// The pipeline's settings without its chain: what changing needs a restart of the
    /// pipeline (the chain's modules are swapped in place).
    pub fn settings(&self) -> PipelineConfig {
        PipelineConfig {
            transform: Vec::new(),
            ..self.clone()
        }
    }

    /// Checks the pipeline's settings under `limits`; `place` says where it is declared
    /// (`pipeline[0]`), for messages.
    pub fn check(&self, place: &str, limits: &LimitsConfig) -> Result<(), ConfigError> {
        if self.name.is_empty()
            || !(self.name.chars()).all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(
                format!("{place}.name `{}`", self.name),
                "use letters, digits, `-`, `_` and `.` only",
            ));
        }
        let at = format!("{place} ({})", self.name);
        if self.inputs.is_empty() {
            return Err(invalid(
                format!("{at}.inputs"),
                "list at least one topic to consume",
            ));
        }
        if self.outputs.is_empty() {
            return Err(invalid(
                format!("{at}.outputs"),
                "list at least one topic to write to",
            ));
        }
        for topic in self
            .inputs
            .iter()
            .chain(&self.outputs)
            .chain(&self.dead_letter)
        {
            check_topic(topic).map_err(|e| invalid(format!("{at}: topic `{topic}`"), e))?;
        }
        for (field, topics) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            if let Some(twice) = (topics.iter().enumerate()).find(|(i, t)| topics[..*i].contains(t))
            {
                return Err(invalid(
                    format!("{at}.{field}"),
                    format!("`{}` is listed twice", twice.1),
                ));
            }
        }
        if let Some(dead_letter) = &self.dead_letter
            && self.outputs.contains(dead_letter)
        {
            return Err(invalid(
                format!("{at}.dead_letter"),
                format!(
                    "`{dead_letter}` is also an output: failed records would be mixed with results"
                ),
            ));
        }
        if self
            .group_id
            .as_deref()
            .is_some_and(|g| g.trim().is_empty())
        {
            return Err(invalid(
                format!("{at}.group_id"),
                "is empty: name a consumer group, or leave it out for `sluice-<name>`",
            ));
        }
        in_range(format!("{at}.linger_ms"), self.linger_ms, 0..=60_000)?;
        if let Some(topic) = (self.outputs.iter())
            .chain(&self.dead_letter)
            .find(|t| self.inputs.contains(t))
        {
            return Err(invalid(
                at,
                format!("`{topic}` is both an input and an output, which would loop forever"),
            ));
        }
        if self.batch_size == 0 || self.batch_size > 100_000 {
            return Err(invalid(
                format!("{at}.batch_size"),
                format!("{} is out of range 1..=100000", self.batch_size),
            ));
        }
        let memory = limits.memory_mb as usize * 1024 * 1024;
        if let Some(bytes) = self.batch_max_bytes
            && (bytes < 1024 || bytes > memory / 2)
        {
            return Err(invalid(
                format!("{at}.batch_max_bytes"),
                format!(
                    "{bytes} is out of range 1024..={}: a batch and its outputs must fit in half of limits.memory_mb",
                    memory / 2
                ),
            ));
        }
        let mut tables = std::collections::HashSet::new();
        for (t, table) in self.table.iter().enumerate() {
            if table.name.is_empty() || !tables.insert(&table.name) {
                return Err(invalid(
                    format!("{at}.table[{t}].name"),
                    format!("`{}` is empty or declared twice", table.name),
                ));
            }
            check_topic(&table.topic)
                .map_err(|e| invalid(format!("{at}.table[{t}].topic `{}`", table.topic), e))?;
            in_range(format!("{at}.table[{t}].max_mb"), table.max_mb, 1..=4096)?;
        }
        if self.commit_interval_ms == 0 || self.commit_interval_ms > 60_000 {
            return Err(invalid(
                format!("{at}.commit_interval_ms"),
                format!("{} is out of range 1..=60000", self.commit_interval_ms),
            ));
        }
        if let Some(idle) = self.idle_timeout_ms {
            in_range(format!("{at}.idle_timeout_ms"), idle, 1..=86_400_000)?;
        }
        if self.max_records_per_second == Some(0) {
            return Err(invalid(
                format!("{at}.max_records_per_second"),
                "must be at least 1 (omit it for no limit)",
            ));
        }
        for (t, transform) in self.transform.iter().enumerate() {
            if !transform.is_file() {
                transform
                    .stored()
                    .map_err(|e| invalid(format!("{at}.transform[{t}].module"), e))?;
            }
        }
        Ok(())
    }
}

impl PipelineConfig {
    /// The consumer group: `group_id`, or `sluice-<name>`.
    pub fn group(&self) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("sluice-{}", self.name))
    }

    /// Most bytes per batch under `limits`: `batch_max_bytes`, or an eighth of the memory cap.
    pub fn batch_max_bytes(&self, limits: &LimitsConfig) -> usize {
        self.batch_max_bytes
            .unwrap_or_else(|| default_batch_max_bytes(limits.memory_mb))
    }
}

/// The default most bytes per batch for instances capped at `memory_mb`: an eighth of it, so
/// that a batch, its outputs and the transform's own working memory fit under the cap.
pub fn default_batch_max_bytes(memory_mb: u32) -> usize {
    memory_mb as usize * (1024 * 1024 / 8)
}

/// A lookup table: the latest value per key of a topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TableDefinition)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TransformDefinition)]
pub struct TransformConfig {
    /// A stored module, `NAME` (its latest version) or `NAME@VERSION`; in a file, also the
    /// path of a `.wasm` component, relative to the file, which is stored (as the file's name
    /// without `.wasm`) when the file is applied.
    pub module: String,
    /// Key/value configuration passed to the transform's `init`.
    #[serde(default)]
    pub config: BTreeMap<String, Scalar>,
}

impl TransformConfig {
    /// Whether `module` names a `.wasm` file rather than a stored module.
    pub fn is_file(&self) -> bool {
        self.module.ends_with(".wasm") || self.module.contains('/')
    }

    /// The stored module `module` names: its name and version (`None`: the latest).
    pub fn stored<'a>(&'a self) -> Result<(&'a str, Option<u32>), String> {
        let check = |name: &'a str| -> Result<&'a str, String> {
            if name.is_empty()
                || !(name.chars()).all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(format!(
                    "`{}` is neither a stored module (NAME or NAME@VERSION) nor a `.wasm` file",
                    self.module
                ));
            }
            Ok(name)
        };
        match self.module.split_once('@') {
            None => Ok((check(&self.module)?, None)),
            Some((name, version)) => match version.parse::<u32>() {
                Ok(v) if v > 0 => Ok((check(name)?, Some(v))),
                _ => Err(format!(
                    "`{version}` in `{}` is not a version number (from 1)",
                    self.module
                )),
            },
        }
    }
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
    /// Bearer token required, besides `token`, to read what shows records or settings (dead
    /// letters, pipelines and their configurations, modules, rates): share it to let someone
    /// watch without letting them change anything. Needs `token`.
    pub read_token: Option<String>,
    /// Largest module the API accepts for upload, in MiB.
    #[serde(default = "defaults::max_module_mb")]
    pub max_module_mb: u32,
    /// Host names the API and the dashboard may be reached by, besides IP addresses,
    /// `localhost`, this machine's name and `[fleet] advertised_url`'s host (behind a proxy, by
    /// a DNS name). A request naming another host is refused, so that a web page cannot reach
    /// the API by pointing a name of its own at this machine (DNS rebinding).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: defaults::listen(),
            token: None,
            read_token: None,
            max_module_mb: defaults::max_module_mb(),
            allowed_hosts: Vec::new(),
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
        10
    }
    pub fn fleet_name() -> String {
        "sluice".into()
    }

    pub fn commit_interval_ms() -> u64 {
        100
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

/// What is wrong with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read configuration {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Something in the file, which the source names.
    #[error("{}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        #[source]
        source: Box<ConfigError>,
    },
    /// Not TOML, or not the shape of a configuration (a misspelt key, a wrong type).
    #[error("{}", .0.to_string().trim_end())]
    Syntax(#[from] toml::de::Error),
    /// A value out of its range, or settings that contradict each other.
    #[error("{at}: {problem}")]
    Invalid {
        /// Where: `pipeline[0] (unify).batch_size`.
        at: String,
        /// What is wrong and what to do.
        problem: String,
    },
}

fn invalid(at: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        at: at.into(),
        problem: problem.into(),
    }
}

impl Config {
    /// Reads a configuration file, applies `overrides` (which win over it), then checks the
    /// result: a check that depends on several settings (a public `listen` needs a token) sees
    /// the values that will be used. Module paths are made relative to the file's folder.
    pub fn load(path: &Path, overrides: Overrides) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: Config =
            toml::from_str(&text).map_err(|e| ConfigError::from(e).in_file(path))?;
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
                if transform.is_file() && Path::new(&transform.module).is_relative() {
                    transform.module = base.join(&transform.module).display().to_string();
                }
            }
        }
        config.override_with(overrides);
        config.check().map_err(|e| e.in_file(path))?;
        Ok(config)
    }

    /// Applies settings from the environment and flags, which win over the file, and checks
    /// the result again.
    pub fn apply(&mut self, overrides: Overrides) -> Result<(), ConfigError> {
        self.override_with(overrides);
        self.check()
    }

    fn override_with(&mut self, overrides: Overrides) {
        overrides.kafka.apply(&mut self.kafka);
        if let Some(listen) = overrides.listen {
            self.api.listen = listen;
        }
        if overrides.token.is_some() {
            self.api.token = overrides.token;
        }
        if overrides.state_dir.is_some() {
            self.state_dir = overrides.state_dir;
        }
        for pipeline in &mut self.pipeline {
            pipeline.guarantee = overrides.guarantee.unwrap_or(pipeline.guarantee);
            pipeline.commit_interval_ms = overrides
                .commit_interval_ms
                .unwrap_or(pipeline.commit_interval_ms);
        }
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for (i, p) in self.pipeline.iter().enumerate() {
            p.check(&format!("pipeline[{i}]"), &self.limits)?;
            if !names.insert(&p.name) {
                return Err(invalid(
                    format!("pipeline[{i}] ({}).name", p.name),
                    format!("another pipeline is already called `{}`", p.name),
                ));
            }
        }
        if let Some(fleet) = &self.fleet {
            check_topic(&fleet.name)
                .map_err(|e| invalid(format!("fleet.name `{}`", fleet.name), e))?;
            if fleet.replication_factor.is_some_and(|r| r < 1) {
                return Err(invalid("fleet.replication_factor", "must be at least 1"));
            }
            if let Some(url) = &fleet.advertised_url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(invalid(
                    "fleet.advertised_url",
                    format!("`{url}` is not an http:// or https:// URL"),
                ));
            }
        }
        if self
            .api
            .token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(invalid(
                "api.token",
                "is empty, which would turn authentication off: set a token, or leave it (and SLUICE_API_TOKEN) unset to run without one",
            ));
        }
        if self
            .api
            .read_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(invalid(
                "api.read_token",
                "is empty: set a token, or leave it out",
            ));
        }
        if self.api.read_token.is_some() && self.api.token.is_none() {
            return Err(invalid(
                "api.read_token",
                "needs api.token too: otherwise anyone could change what they may not read",
            ));
        }
        if !self.api.listen.ip().is_loopback() && self.api.token.is_none() {
            return Err(invalid(
                "api.listen",
                format!(
                    "{} is not a loopback address; set api.token so that only holders of it can change pipelines",
                    self.api.listen
                ),
            ));
        }
        in_range("api.max_module_mb", self.api.max_module_mb, 1..=1024)?;
        // A wasm32 instance addresses 4 GiB at most.
        in_range("limits.memory_mb", self.limits.memory_mb, 1..=4096)?;
        in_range(
            "limits.cpu_budget_ms",
            self.limits.cpu_budget_ms,
            1..=60_000,
        )?;
        in_range("shutdown_timeout_ms", self.shutdown_timeout_ms, 1..=600_000)?;
        Ok(())
    }
}

/// `value` of the setting `at`, refused outside `range` with a message naming both.
fn in_range<T: PartialOrd + std::fmt::Display>(
    at: impl Into<String>,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(invalid(
        at,
        format!(
            "{value} is out of range {}..={}",
            range.start(),
            range.end()
        ),
    ))
}

impl ConfigError {
    /// This error, said to be in file `path`.
    pub fn in_file(self, path: &Path) -> ConfigError {
        ConfigError::InFile {
            path: path.to_path_buf(),
            source: Box::new(self),
        }
    }
}

/// Settings that win over the file: from flags, or from the environment.
#[derive(Debug, Default)]
pub struct Overrides {
    /// Kafka connection settings.
    pub kafka: crate::kafka::KafkaArgs,
    /// `[api] listen`.
    pub listen: Option<std::net::SocketAddr>,
    /// `[api] token`.
    pub token: Option<String>,
    /// `state_dir`.
    pub state_dir: Option<PathBuf>,
    /// Every pipeline's `guarantee`.
    pub guarantee: Option<Guarantee>,
    /// Every pipeline's `commit_interval_ms`.
    pub commit_interval_ms: Option<u64>,
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
        assert_eq!(
            (p.guarantee, p.commit_interval_ms),
            (Guarantee::AtLeastOnce, 100)
        );
        let exactly = MINIMAL.replace(
            "name = \"unify\"",
            "name = \"unify\"\nguarantee = \"exactly-once\"\ncommit_interval_ms = 250",
        );
        let p = &Config::parse(&exactly).unwrap().pipeline[0];
        assert_eq!(
            (p.guarantee, p.commit_interval_ms),
            (Guarantee::ExactlyOnce, 250)
        );
        assert_eq!(p.transform[0].config["strict"].0, "true");
    }

    fn error(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn the_environment_and_flags_win_over_the_file() {
        let mut c = Config::parse(MINIMAL).unwrap();
        let overrides = Overrides {
            kafka: crate::kafka::KafkaArgs {
                bootstrap_servers: Some("b:9092".into()),
                properties: vec![("sasl.password".into(), "s3cret".into())],
            },
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
                .to_string()
                .starts_with("api.listen: 0.0.0.0:8080 is not a loopback address; set api.token")
        );
        let with_token = Overrides {
            token: Some("t".into()),
            guarantee: Some(Guarantee::ExactlyOnce),
            commit_interval_ms: Some(500),
            ..Default::default()
        };
        c.apply(with_token).unwrap();
        let p = &c.pipeline[0];
        assert_eq!(
            (p.guarantee, p.commit_interval_ms),
            (Guarantee::ExactlyOnce, 500)
        );
    }

    /// Merges `fragment` into `base`: tables key by key, and a `[[pipeline]]` fragment (or a
    /// `[[pipeline.x]]` one, which TOML makes a table) into the base's first pipeline.
    fn merge(base: &mut toml::Value, fragment: toml::Value) {
        match (base, fragment) {
            (toml::Value::Table(base), toml::Value::Table(fragment)) => {
                for (key, value) in fragment {
                    match base.get_mut(&key) {
                        Some(existing) => merge(existing, value),
                        None => {
                            base.insert(key, value);
                        }
                    }
                }
            }
            (toml::Value::Array(base), toml::Value::Array(mut fragment))
                if base.len() == 1 && fragment.len() == 1 && base[0].is_table() =>
            {
                merge(&mut base[0], fragment.remove(0));
            }
            (toml::Value::Array(base), fragment @ toml::Value::Table(_)) if base.len() == 1 => {
                merge(&mut base[0], fragment);
            }
            (base, fragment) => *base = fragment,
        }
    }

    /// Every TOML block of the READMEs: a Cargo manifest parses as TOML; anything else is
    /// configuration, complete or a fragment completed by a minimal pipeline, and must load.
    #[test]
    fn every_toml_block_in_the_readmes_is_a_configuration_that_loads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = vec![root.join("README.md")];
        for dir in std::fs::read_dir(root.join("transforms")).unwrap() {
            files.push(dir.unwrap().path().join("README.md"));
        }
        let mut checked = 0;
        for file in files.iter().filter(|f| f.exists()) {
            let text = std::fs::read_to_string(file).unwrap();
            for (i, block) in text.split("```toml\n").skip(1).enumerate() {
                let block = block.split("```").next().unwrap();
                let at = format!("{} toml block {}", file.display(), i + 1);
                let value: toml::Value =
                    toml::from_str(block).unwrap_or_else(|e| panic!("{at}: {e}\n{block}"));
                if block.contains("[dependencies]") || block.contains("[package]") {
                    continue;
                }
                let mut config: toml::Value = toml::from_str(MINIMAL).unwrap();
                merge(&mut config, value);
                let text = toml::to_string(&config).unwrap();
                Config::parse(&text).unwrap_or_else(|e| panic!("{at}: {e}\n{block}"));
                checked += 1;
            }
        }
        assert!(checked >= 5, "{checked} configuration blocks found");
    }

    #[test]
    fn a_fleet_is_named_checked_and_optional() {
        assert!(Config::parse(MINIMAL).unwrap().fleet.is_none());
        let with = |fleet: &str| format!("[fleet]\n{fleet}\n{MINIMAL}");
        let fleet = Config::parse(&with("")).unwrap().fleet.unwrap();
        assert_eq!(
            (
                fleet.name.as_str(),
                fleet.replication_factor,
                fleet.advertised_url
            ),
            ("sluice", None, None)
        );
        let url = "advertised_url = \"https://sluice-3.example.internal:8443/\"";
        let fleet = Config::parse(&with(url)).unwrap().fleet.unwrap();
        assert_eq!(
            fleet.advertised_url.as_deref(),
            Some("https://sluice-3.example.internal:8443/")
        );
        assert!(error(&with("name = \"a/b\"")).starts_with("fleet.name `a/b`"));
        assert!(error(&with("replication_factor = 0")).starts_with("fleet.replication_factor"));
        assert_eq!(
            error(&with("advertised_url = \"sluice-3:8080\"")),
            "fleet.advertised_url: `sluice-3:8080` is not an http:// or https:// URL"
        );
    }

    #[test]
    fn a_token_from_the_environment_lets_the_file_listen_publicly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        let public = format!("[api]\nlisten = \"0.0.0.0:8080\"\n{MINIMAL}");
        std::fs::write(&path, public).unwrap();
        let refused = Config::load(&path, Overrides::default()).unwrap_err();
        let cause = std::error::Error::source(&refused).unwrap().to_string();
        assert!(
            cause.starts_with("api.listen: 0.0.0.0:8080 is not a loopback"),
            "{cause}"
        );
        let with_token = Overrides {
            token: Some("from SLUICE_API_TOKEN".into()),
            ..Default::default()
        };
        let config = Config::load(&path, with_token).unwrap();
        assert_eq!(config.api.token.as_deref(), Some("from SLUICE_API_TOKEN"));
        // And the other way round: a flag that makes the address public needs a token too.
        std::fs::write(&path, MINIMAL).unwrap();
        let public_flag = Overrides {
            listen: Some("0.0.0.0:8080".parse().unwrap()),
            ..Default::default()
        };
        assert!(Config::load(&path, public_flag).is_err());
    }

    #[test]
    fn an_empty_token_is_a_mistake_not_authentication_off() {
        let with_token = MINIMAL.replace("[kafka]", "[api]\ntoken = \"secret\"\n\n[kafka]");
        let mut config = Config::parse(&with_token).unwrap();
        // SLUICE_API_TOKEN set but empty wins over the file's token: refused, by name.
        let empty = Overrides {
            token: Some(String::new()),
            ..Default::default()
        };
        let error = config.apply(empty).unwrap_err().to_string();
        assert!(error.starts_with("api.token: is empty"), "{error}");
        let error = Config::parse(&MINIMAL.replace("[kafka]", "[api]\ntoken = \" \"\n\n[kafka]"))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("api.token: is empty"), "{error}");
        let error =
            Config::parse(&MINIMAL.replace("[kafka]", "[api]\nread_token = \"r\"\n\n[kafka]"))
                .unwrap_err()
                .to_string();
        assert!(
            error.starts_with("api.read_token: needs api.token too"),
            "{error}"
        );
    }

    #[test]
    fn file_errors_keep_their_cause_and_say_which_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(
            &path,
            MINIMAL.replace("[[pipeline]]", "[[pipeline]]\nbatch_size = 0"),
        )
        .unwrap();
        let error = Config::load(&path, Overrides::default()).unwrap_err();
        assert_eq!(error.to_string(), path.display().to_string());
        let cause = std::error::Error::source(&error).unwrap().to_string();
        assert_eq!(
            cause,
            "pipeline[0] (unify).batch_size: 0 is out of range 1..=100000"
        );
        let missing =
            Config::load(&dir.path().join("nope.toml"), Overrides::default()).unwrap_err();
        assert!(matches!(missing, ConfigError::Read { .. }), "{missing:?}");
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
        let idle = MINIMAL.replace("name = \"unify\"", "name = \"unify\"\nidle_timeout_ms = 0");
        assert_eq!(
            error(&idle),
            "pipeline[0] (unify).idle_timeout_ms: 0 is out of range 1..=86400000"
        );
        // Values no pipeline could mean, each named with its range.
        let pipeline_setting =
            |line: &str| MINIMAL.replace("name = \"unify\"", &format!("name = \"unify\"\n{line}"));
        let top = |line: &str| format!("{line}\n{MINIMAL}");
        for (text, expected) in [
            (
                pipeline_setting("linger_ms = 9223372036854775807"),
                "pipeline[0] (unify).linger_ms: 9223372036854775807 is out of range 0..=60000",
            ),
            (
                top("[limits]\nmemory_mb = 4294967295"),
                "limits.memory_mb: 4294967295 is out of range 1..=4096",
            ),
            (
                top("[limits]\ncpu_budget_ms = 9223372036854775807"),
                "limits.cpu_budget_ms: 9223372036854775807 is out of range 1..=60000",
            ),
            (
                top("shutdown_timeout_ms = 0"),
                "shutdown_timeout_ms: 0 is out of range 1..=600000",
            ),
            (
                pipeline_setting("group_id = \" \""),
                "pipeline[0] (unify).group_id: is empty",
            ),
            (
                MINIMAL.replace("\"timezone2\"]", "\"timezone1\"]"),
                "pipeline[0] (unify).inputs: `timezone1` is listed twice",
            ),
            (
                MINIMAL.replace(
                    "dead_letter = \"unified_timestamps.dlq\"",
                    "dead_letter = \"unified_timestamps\"",
                ),
                "pipeline[0] (unify).dead_letter: `unified_timestamps` is also an output",
            ),
        ] {
            let said = error(&text);
            assert!(said.starts_with(expected), "{said}");
        }
        let bad_topic = MINIMAL.replace("timezone2", "time zone");
        assert_eq!(
            error(&bad_topic),
            "pipeline[0] (unify): topic `time zone`: names use letters, digits, `.`, `_` and `-` only"
        );
        // No pipeline is fine: they can be created through the API.
        assert!(Config::parse("[kafka]\n").unwrap().pipeline.is_empty());
        // A transform names a `.wasm` file or a stored module.
        let with_module = |module: &str| MINIMAL.replace("\"tz.wasm\"", &format!("{module:?}"));
        for module in ["tz", "tz@2", "lib/tz.wasm"] {
            Config::parse(&with_module(module)).unwrap();
        }
        assert_eq!(
            error(&with_module("tz@two")),
            "pipeline[0] (unify).transform[0].module: `two` in `tz@two` is not a version number (from 1)"
        );
        assert_eq!(
            error(&with_module("t z")),
            "pipeline[0] (unify).transform[0].module: `t z` is neither a stored module (NAME or NAME@VERSION) nor a `.wasm` file"
        );
        let huge_batch = MINIMAL.replace(
            "name = \"unify\"",
            "name = \"unify\"\nbatch_max_bytes = 40000000",
        );
        assert_eq!(
            error(&huge_batch),
            "pipeline[0] (unify).batch_max_bytes: 40000000 is out of range 1024..=33554432: a batch and its outputs must fit in half of limits.memory_mb"
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

/// Property tests of the loader: no file, however broken, makes it panic; one it accepts holds
/// only values in their documented ranges. Failing cases are kept in `proptest-regressions/`.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A `[[pipeline]]` with `key = value` set, `value` any TOML scalar text.
    fn pipeline_with(key: &str, value: &str) -> String {
        format!(
            "[[pipeline]]\nname = \"p\"\ninputs = [\"a\"]\noutputs = [\"b\"]\n{key} = {value}\n"
        )
    }

    fn any_value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| format!("{f:?}")),
            any::<bool>().prop_map(|b| b.to_string()),
            ".{0,12}".prop_map(|s| format!("{s:?}")),
            Just("[]".to_string()),
            Just("{}".to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn any_text_is_read_or_refused_never_a_panic(text in "(?s).{0,200}") {
            let _ = Config::parse(&text);
        }

        #[test]
        fn accepted_settings_are_in_range(
            key in prop::sample::select(vec![
                "batch_size", "linger_ms", "batch_max_bytes", "commit_interval_ms",
                "idle_timeout_ms", "max_records_per_second", "group_id", "dead_letter",
                "guarantee", "start", "on_error",
            ]),
            value in any_value(),
        ) {
            if let Ok(config) = Config::parse(&pipeline_with(key, &value)) {
                let p = &config.pipeline[0];
                prop_assert!((1..=100_000).contains(&p.batch_size));
                prop_assert!(p.linger_ms <= 60_000);
                prop_assert!((1..=60_000).contains(&p.commit_interval_ms));
                prop_assert!(p.idle_timeout_ms.is_none_or(|t| (1..=86_400_000).contains(&t)));
                prop_assert!(p.max_records_per_second != Some(0));
                prop_assert!(p.group_id.as_deref().is_none_or(|g| !g.trim().is_empty()));
                prop_assert!(p.dead_letter.as_ref().is_none_or(|d| !p.outputs.contains(d) && !p.inputs.contains(d)));
            }
        }

        #[test]
        fn accepted_limits_are_in_range(
            key in prop::sample::select(vec!["memory_mb", "cpu_budget_ms"]),
            value in any_value(),
        ) {
            let text = format!("[limits]\n{key} = {value}\n");
            if let Ok(config) = Config::parse(&text) {
                prop_assert!((1..=4096).contains(&config.limits.memory_mb));
                prop_assert!((1..=60_000).contains(&config.limits.cpu_budget_ms));
            }
        }
    }
}
