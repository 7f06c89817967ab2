//! Prometheus metrics, read at scrape time from the pipelines' own atomics, so that metrics cost
//! nothing on the record path.

use super::AppState;
use crate::pipeline::metrics::{LATENCY_BUCKETS_US, PipelineMetrics, Status, TopicCounters};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering::Relaxed;

/// `GET /metrics`, in the OpenMetrics text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut registry = Registry::with_prefix("sluice");
    registry.register_collector(Box::new(Snapshot(state)));
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Reads every pipeline's counters at scrape time.
#[derive(Debug)]
struct Snapshot(AppState);

type Labels = Vec<(&'static str, String)>;

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Labels, u64)],
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        ConstCounter::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Labels, i64)],
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let pipelines = self.0.control.pipelines();
        let per_pipeline = |read: &dyn Fn(&PipelineMetrics) -> u64| -> Vec<(Labels, u64)> {
            pipelines
                .iter()
                .map(|p| (vec![("pipeline", p.metrics.name.clone())], read(&p.metrics)))
                .collect()
        };
        let per_topic = |read: &dyn Fn(&PipelineMetrics) -> &TopicCounters| -> Vec<(Labels, u64)> {
            pipelines
                .iter()
                .flat_map(|p| {
                    read(&p.metrics)
                        .iter()
                        .map(|(topic, n)| {
                            (
                                vec![("pipeline", p.name.clone()), ("topic", topic.to_string())],
                                n,
                            )
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        counter(
            &mut encoder,
            "records_consumed",
            "Records consumed, per input topic.",
            &per_topic(&|m| &m.consumed),
        )?;
        counter(
            &mut encoder,
            "records_produced",
            "Records written, per output topic.",
            &per_topic(&|m| &m.produced),
        )?;
        counter(
            &mut encoder,
            "records_failed",
            "Records whose transform failed, per input topic.",
            &per_topic(&|m| &m.failed),
        )?;
        counter(
            &mut encoder,
            "dead_letters",
            "Failed records written to the dead-letter topic.",
            &per_pipeline(&|m| m.dead_lettered.load(Relaxed)),
        )?;
        counter(
            &mut encoder,
            "records_skipped",
            "Failed records skipped (on_error = skip).",
            &per_pipeline(&|m| m.skipped.load(Relaxed)),
        )?;
        counter(
            &mut encoder,
            "swaps",
            "Partition workers switched to a newly deployed chain.",
            &per_pipeline(&|m| m.swaps.load(Relaxed)),
        )?;
        counter(
            &mut encoder,
            "instance_restarts",
            "Transform instances started afresh after a trap.",
            &per_pipeline(&|m| m.instance_restarts.load(Relaxed)),
        )?;
        counter(
            &mut encoder,
            "transactions_committed",
            "Exactly-once: transactions committed.",
            &per_pipeline(&|m| m.transactions_committed.load(Relaxed)),
        )?;
        counter(
            &mut encoder,
            "transactions_aborted",
            "Exactly-once: transactions aborted; their records were processed again.",
            &per_pipeline(&|m| m.transactions_aborted.load(Relaxed)),
        )?;
        counter(
            &mut encoder,
            "committed_offset_waits",
            "Reports of an assigned partition not read for 20 s because its committed offset has not come.",
            &per_pipeline(&|m| m.committed_offset_waits.load(Relaxed)),
        )?;
        counter(
            &mut encoder,
            "worker_deaths",
            "Partition workers that died; each stops its pipeline.",
            &per_pipeline(&|m| m.worker_deaths.load(Relaxed)),
        )?;
        counter(
            &mut encoder,
            "state_restored_records",
            "Stateful transforms: changelog records read to restore state.",
            &per_pipeline(&|m| m.state_restored_records.load(Relaxed)),
        )?;
        counter(
            &mut encoder,
            "changelog_records",
            "Stateful transforms: state changes written to changelogs.",
            &per_pipeline(&|m| m.changelog_records.load(Relaxed)),
        )?;
        let state_gauge = |value: &dyn Fn(&PipelineMetrics) -> u64| -> Vec<(Labels, i64)> {
            (pipelines.iter())
                .map(|p| {
                    (
                        vec![("pipeline", p.metrics.name.clone())],
                        value(&p.metrics) as i64,
                    )
                })
                .collect()
        };
        gauge(
            &mut encoder,
            "state_tasks",
            "Stateful transforms: tasks whose state is open on this member.",
            &state_gauge(&|m| m.state_tasks.load(Relaxed)),
        )?;
        gauge(
            &mut encoder,
            "state_restoring_tasks",
            "Stateful transforms: tasks restoring their state from its changelog now.",
            &state_gauge(&|m| m.state_restoring.load(Relaxed)),
        )?;
        let up: Vec<(Labels, i64)> = pipelines
            .iter()
            .map(|p| {
                (
                    vec![("pipeline", p.metrics.name.clone())],
                    (p.metrics.status() == Status::Running) as i64,
                )
            })
            .collect();
        gauge(
            &mut encoder,
            "pipeline_running",
            "1 when the pipeline is consuming, 0 otherwise.",
            &up,
        )?;

        let last_commit: Vec<(Labels, i64)> = pipelines
            .iter()
            .filter(|p| p.guarantee == crate::config::Guarantee::ExactlyOnce)
            .filter_map(|p| {
                let age = super::model::Transactions::read(&p.metrics).last_commit_age_ms?;
                Some((vec![("pipeline", p.metrics.name.clone())], age as i64))
            })
            .collect();
        gauge(
            &mut encoder,
            "transaction_last_commit_age_ms",
            "Exactly-once: milliseconds since the last transaction committed.",
            &last_commit,
        )?;

        let mut lag = Vec::new();
        for p in pipelines.iter() {
            for ((topic, partition), value) in p.metrics.lag.lock().unwrap().iter() {
                let labels = vec![
                    ("pipeline", p.metrics.name.clone()),
                    ("topic", topic.clone()),
                    ("partition", partition.to_string()),
                ];
                lag.push((labels, *value));
            }
        }
        gauge(
            &mut encoder,
            "consumer_lag",
            "Records not yet consumed, per input partition.",
            &lag,
        )?;

        let mut modules = Vec::new();
        for p in pipelines.iter() {
            for (stage, spec) in p.deployed.current().1.iter().enumerate() {
                let labels = vec![
                    ("pipeline", p.metrics.name.clone()),
                    ("slot", stage.to_string()),
                    ("module", spec.name.clone()),
                    ("version", spec.version.to_string()),
                    ("sha256", spec.module.sha256.clone()),
                ];
                modules.push((labels, 1));
            }
        }
        gauge(
            &mut encoder,
            "module_info",
            "The module running in each transform slot.",
            &modules,
        )?;

        let (mut entries, mut bytes) = (Vec::new(), Vec::new());
        for p in pipelines.iter() {
            for table in p.tables.iter() {
                let labels = vec![
                    ("pipeline", p.metrics.name.clone()),
                    ("table", table.name.clone()),
                ];
                entries.push((labels.clone(), table.len() as i64));
                bytes.push((labels, table.bytes() as i64));
            }
        }
        gauge(
            &mut encoder,
            "table_entries",
            "Keys held by each lookup table.",
            &entries,
        )?;
        gauge(
            &mut encoder,
            "table_bytes",
            "Memory counted against each lookup table's cap.",
            &bytes,
        )?;

        let mut histogram = encoder.encode_descriptor(
            "batch_duration_seconds",
            "Time to run one batch through the transform chain.",
            None,
            MetricType::Histogram,
        )?;
        for p in pipelines.iter() {
            let m = &p.metrics;
            // Each bucket's own count: the encoder makes them cumulative.
            let bounds =
                (LATENCY_BUCKETS_US.iter().map(|us| *us as f64 / 1e6)).chain([f64::INFINITY]);
            let buckets: Vec<(f64, u64)> = bounds
                .zip(&m.batch_latency_buckets)
                .map(|(bound, count)| (bound, count.load(Relaxed)))
                .collect();
            let sum = m.batch_latency_us_sum.load(Relaxed) as f64 / 1e6;
            let labels: Labels = vec![("pipeline", m.name.clone())];
            histogram
                .encode_family(&labels)?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    sum,
                    m.batches.load(Relaxed),
                    &buckets,
                    None,
                )?;
        }
        Ok(())
    }
}
