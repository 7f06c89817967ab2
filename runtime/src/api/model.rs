//! What `/api/v1` receives and answers, as types: the handlers build them, `sluice modules` and
//! `sluice deploy` read them, and the OpenAPI document (and from it the dashboard's TypeScript
//! types) is generated from them, so the three cannot drift apart.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

pub use crate::control::store::ModuleVersion;

/// Every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What is wrong.
    pub error: String,
}

/// `GET /info`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Info {
    /// The runtime's version.
    pub version: String,
    /// The WIT contract transforms must implement.
    pub contract: String,
    /// Whether changes need `Authorization: Bearer <api.token>`.
    pub auth_required: bool,
    /// Whether reads of records and settings need a token too (`api.read_token`).
    pub read_auth_required: bool,
    /// The largest module an upload may send, in bytes (api.max_module_mb).
    pub max_module_bytes: u64,
}

/// A stored module and its versions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Module {
    /// The module's name.
    pub name: String,
    /// Its versions, oldest first.
    pub versions: Vec<ModuleVersion>,
}

/// `GET /modules`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModuleList {
    /// Every stored module, by name.
    pub modules: Vec<Module>,
}

/// `POST /modules`: the version the upload was stored as.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Uploaded {
    /// The module's name.
    pub name: String,
    /// The version.
    #[serde(flatten)]
    pub version: ModuleVersion,
}

/// A pipeline's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Connecting and waiting for partitions.
    #[default]
    Starting,
    /// Consuming.
    Running,
    /// Running, but not consuming: paused through the API.
    Paused,
    /// Shutting down.
    Stopping,
    /// Stopped.
    Stopped,
    /// Stopped by an error (the pipeline's `error`).
    Failed,
}

/// Records per second over the last second.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct Rates {
    /// Consumed.
    #[serde(rename = "in")]
    pub input: f64,
    /// Handed to the producer for the output topics (acknowledged or not yet).
    #[serde(rename = "out")]
    pub output: f64,
    /// Failed in a transform.
    pub failed: f64,
}

/// Records since the process started.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct Totals {
    /// Consumed.
    #[serde(rename = "in")]
    pub input: u64,
    /// Handed to the producer for the output topics (acknowledged or not yet).
    #[serde(rename = "out")]
    pub output: u64,
    /// Failed in a transform.
    pub failed: u64,
    /// Written to the dead-letter topic.
    pub dead_letters: u64,
}

/// Partition workers' switches to newly deployed chains.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct Swaps {
    /// Partition workers that switched to a deployed chain.
    pub count: u64,
    /// Longest a partition paused for a switch, in milliseconds.
    pub max_pause_ms: f64,
}

/// A pipeline's stateful transforms on this member: their tasks' state, and its changelogs.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct StateStats {
    /// Tasks whose state is open on this member.
    pub tasks: u64,
    /// Tasks restoring their state from its changelog now; their partitions wait until done.
    pub restoring: u64,
    /// Changelog records read to restore state since the process started.
    pub restored_records: u64,
    /// State changes written to changelogs since the process started.
    pub changelog_records: u64,
}

impl StateStats {
    /// The counters of `m`.
    pub fn read(m: &crate::pipeline::metrics::PipelineMetrics) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        StateStats {
            tasks: m.state_tasks.load(Relaxed),
            restoring: m.state_restoring.load(Relaxed),
            restored_records: m.state_restored_records.load(Relaxed),
            changelog_records: m.changelog_records.load(Relaxed),
        }
    }
}

/// One pipeline's figures, as the live feed sends them once a second.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PipelineStats {
    /// The pipeline.
    pub name: String,
    /// Its status.
    pub status: Status,
    /// Records per second.
    pub rates: Rates,
    /// Records not yet consumed, over every input partition.
    pub lag: i64,
    /// Mean time to run a batch through the chain over the last second, in milliseconds (0
    /// without batches).
    pub batch_latency_ms: f64,
    /// Counts since the process started.
    pub totals: Totals,
    /// Switches to deployed chains.
    pub swaps: Swaps,
    /// Its stateful transforms' state.
    pub state: StateStats,
    /// In a fleet: the figures of every live member together, and of each.
    #[schema(required = true)]
    pub fleet: Option<FleetPipelineStats>,
}

/// A pipeline's figures over a fleet's live members (those heard from within
/// `member_timeout_ms`), this one's from this second and the others' from their last heartbeat.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct FleetPipelineStats {
    /// Records per second, summed.
    pub rates: Rates,
    /// Records not yet consumed, summed.
    pub lag: i64,
    /// Per member, by id.
    pub members: Vec<MemberRates>,
}

/// One member's share of a pipeline's figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct MemberRates {
    /// The member's id.
    pub member: String,
    /// Records per second.
    pub rates: Rates,
    /// Records not yet consumed from its partitions.
    pub lag: i64,
    /// How many input partitions it has.
    pub partitions: usize,
}

pub use crate::control::fleet::{AssignedPartition, MemberPipeline, MemberStatus, RunningSlot};

/// `GET /fleet`: the members of this process's fleet, as their heartbeats say.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Fleet {
    /// The fleet's name (`[fleet] name`); absent for a process running alone, which is then
    /// the only member.
    #[schema(required = true)]
    pub name: Option<String>,
    /// The id of the member answering.
    pub member: String,
    /// How often members write their heartbeat, in milliseconds.
    pub heartbeat_ms: u64,
    /// After how long without a heartbeat a member is shown as missing, in milliseconds.
    pub member_timeout_ms: u64,
    /// Every member heard from in the status topic's retention, by id.
    pub members: Vec<FleetMember>,
}

/// One member of a fleet.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FleetMember {
    /// What its last heartbeat said.
    #[serde(flatten)]
    pub status: MemberStatus,
    /// How long ago its last heartbeat was written, in milliseconds.
    pub heartbeat_age_ms: i64,
    /// Whether it was heard from within `member_timeout_ms`.
    pub alive: bool,
    /// Whether it is the member answering.
    pub this_member: bool,
}

/// `GET /events`: the data of each `stats` event.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Stats {
    /// When it was sampled, in milliseconds since the Unix epoch.
    pub time: i64,
    /// Per pipeline, in configuration order.
    pub pipelines: Vec<PipelineStats>,
}

/// One transform slot of a pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Slot {
    /// Its place in the chain, from 0.
    pub index: usize,
    /// The module it runs.
    pub module: String,
    /// The module's version.
    pub version: u32,
    /// Hex SHA-256 of the module.
    pub sha256: String,
    /// The configuration its `init` was given.
    pub config: BTreeMap<String, String>,
    /// Whether a rollback has an earlier version to return to.
    pub can_rollback: bool,
}

pub use crate::config::Guarantee;

/// An exactly-once pipeline's transactions since the process started.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Transactions {
    /// Committed.
    pub committed: u64,
    /// Aborted (their records were processed again).
    pub aborted: u64,
    /// Milliseconds since the last commit; absent before the first.
    #[schema(required = true)]
    pub last_commit_age_ms: Option<u64>,
    /// Why the last aborted transaction was aborted.
    #[schema(required = true)]
    pub last_abort: Option<String>,
}

impl Transactions {
    /// The counters of `m`.
    pub fn read(m: &crate::pipeline::metrics::PipelineMetrics) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let last = m.last_commit_ms.load(Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        Transactions {
            committed: m.transactions_committed.load(Relaxed),
            aborted: m.transactions_aborted.load(Relaxed),
            last_commit_age_ms: (last > 0).then(|| now.saturating_sub(last)),
            last_abort: m.last_abort.lock().unwrap().clone(),
        }
    }
}

/// A pipeline: its figures, topics and transform slots.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Pipeline {
    /// Its figures.
    #[serde(flatten)]
    pub stats: PipelineStats,
    /// Why it failed, when its status is `failed`.
    #[schema(required = true)]
    pub error: Option<String>,
    /// Topics it consumes.
    pub inputs: Vec<String>,
    /// Topics it writes to.
    pub outputs: Vec<String>,
    /// Where records that fail go, if anywhere.
    #[schema(required = true)]
    pub dead_letter: Option<String>,
    /// Its transforms, in chain order.
    pub slots: Vec<Slot>,
    /// What it promises about its outputs.
    pub guarantee: Guarantee,
    /// With exactly-once: its transactions.
    #[schema(required = true)]
    pub transactions: Option<Transactions>,
    /// Its definition, as `PUT /pipelines/{pipeline}` takes it (modules as `NAME@VERSION`);
    /// null only for a pipeline deleted a moment ago.
    #[schema(required = true)]
    pub definition: Option<crate::config::PipelineConfig>,
    /// Its latest change, which is what it runs: who made it, when, and what.
    #[schema(required = true)]
    pub last_change: Option<crate::control::Change>,
}

/// `GET /pipelines`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PipelineList {
    /// Every pipeline, in configuration order.
    pub pipelines: Vec<Pipeline>,
}

/// `PUT /pipelines/{pipeline}/transforms/{slot}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Deploy)]
pub struct DeployRequest {
    /// The module to run.
    pub module: String,
    /// Its version; the latest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Configuration for its `init` (numbers and booleans are taken as their text, as in the
    /// file). When absent: the slot's current configuration if the slot runs this module
    /// already (a new version), the module's own defaults (none) otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, crate::config::Scalar>>,
}

/// `POST /modules/{name}/versions/{version}/try`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TryRequest {
    /// Record values: strings as they are, anything else as its JSON text.
    #[schema(max_items = 10000)]
    pub records: Vec<Value>,
    /// Configuration for the module's `init` (numbers and booleans are taken as their text).
    #[serde(default)]
    pub config: BTreeMap<String, crate::config::Scalar>,
    /// Run with this pipeline's lookup tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
}

/// Bytes of a record (a topic, key, value or header): text when they are UTF-8, `{"hex": ...}`
/// otherwise; `null` when absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum RecordBytes {
    /// UTF-8 bytes, as text.
    Text(String),
    /// Other bytes, in hexadecimal.
    Hex {
        /// Two lowercase hex digits per byte.
        hex: String,
    },
}

impl RecordBytes {
    /// The bytes these stand for; an error for hexadecimal that is not.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        match self {
            RecordBytes::Text(text) => Ok(text.clone().into_bytes()),
            RecordBytes::Hex { hex } => {
                let digits = hex.as_bytes();
                if digits.len() % 2 != 0 {
                    return Err(format!(
                        "`{hex}` is not hexadecimal bytes (an odd number of digits)"
                    ));
                }
                (digits.chunks(2))
                    .map(|pair| {
                        std::str::from_utf8(pair)
                            .ok()
                            .and_then(|p| u8::from_str_radix(p, 16).ok())
                            .ok_or_else(|| format!("`{hex}` is not hexadecimal bytes"))
                    })
                    .collect()
            }
        }
    }

    /// `bytes` as the API shows them; `None` when absent.
    pub fn of(bytes: Option<&[u8]>) -> Option<Self> {
        // One rule for bytes as JSON, the engine's.
        serde_json::from_value(crate::engine::bytes_json(bytes)).expect("bytes_json is RecordBytes")
    }
}

/// A header's value: its bytes, or `null` for a header without a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct HeaderValue(pub Option<RecordBytes>);

/// `POST /modules`: the body, a `.wasm` component's bytes (only described: the handler reads the
/// body as it comes).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct WasmBytes(pub Vec<u8>);

/// One record a module wrote.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TryOutput {
    /// The topic it chose, if it chose one.
    #[schema(required = true)]
    pub topic: Option<RecordBytes>,
    /// The key.
    #[schema(required = true)]
    pub key: Option<RecordBytes>,
    /// The headers, by name; a repeated name keeps its last value.
    pub headers: BTreeMap<String, HeaderValue>,
    /// The timestamp, in milliseconds since the Unix epoch.
    #[schema(required = true)]
    pub timestamp: Option<i64>,
    /// The value.
    #[schema(required = true)]
    pub value: Option<RecordBytes>,
}

/// What a module made of one sample record.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct TryResult {
    /// The records it wrote (none when it dropped or failed the record).
    pub outputs: Vec<TryOutput>,
    /// Why it failed the record.
    #[schema(required = true)]
    pub error: Option<String>,
}

/// `POST /modules/{name}/versions/{version}/try`: outputs and error per record, in order. A
/// module whose `init` refuses the configuration gets a 422 error instead.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TryResponse {
    /// One per sample record, in order.
    pub results: Vec<TryResult>,
}

/// A record of a dead-letter topic.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp, in milliseconds since the Unix epoch.
    #[schema(required = true)]
    pub timestamp: Option<i64>,
    /// The failed record's key.
    #[schema(required = true)]
    pub key: Option<RecordBytes>,
    /// The failed record's value.
    #[schema(required = true)]
    pub value: Option<RecordBytes>,
    /// `sluice.error.message`, `sluice.error.kind`, `sluice.source.topic/partition/offset`,
    /// `sluice.transform.slot/module/version/sha256`, and the record's own; a repeated name
    /// keeps its last value.
    pub headers: BTreeMap<String, HeaderValue>,
}

/// `GET /pipelines/{pipeline}/dead-letters`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeadLetters {
    /// The pipeline's dead-letter topic, if it has one.
    #[schema(required = true)]
    pub topic: Option<String>,
    /// Its newest records, oldest first.
    pub records: Vec<DeadLetter>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn record_bytes_are_text_hex_or_null() {
        let shown = |bytes: Option<&[u8]>| serde_json::to_value(RecordBytes::of(bytes)).unwrap();
        assert_eq!(shown(Some(b"caf\xc3\xa9")), json!("café"));
        assert_eq!(shown(Some(b"\xff\x00")), json!({"hex": "ff00"}));
        assert_eq!(shown(None), json!(null));
    }

    #[test]
    fn a_pipeline_is_one_flat_object_both_ways() {
        let pipeline = Pipeline {
            stats: PipelineStats {
                name: "p".into(),
                status: Status::Paused,
                ..Default::default()
            },
            error: None,
            inputs: vec!["a".into()],
            outputs: vec!["b".into()],
            dead_letter: None,
            slots: Vec::new(),
            guarantee: Guarantee::ExactlyOnce,
            transactions: Some(Transactions::default()),
            definition: None,
            last_change: None,
        };
        let text = serde_json::to_value(&pipeline).unwrap();
        assert_eq!(
            (
                &text["name"],
                &text["status"],
                &text["rates"]["in"],
                &text["error"]
            ),
            (&json!("p"), &json!("paused"), &json!(0.0), &json!(null))
        );
        let back: Pipeline = serde_json::from_value(text).unwrap();
        assert_eq!(
            (back.stats.status, back.inputs),
            (Status::Paused, vec!["a".to_string()])
        );
    }
}
