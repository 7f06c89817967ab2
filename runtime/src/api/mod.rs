//! The HTTP side of `sluice run`: health, readiness and Prometheus metrics.
//!
//! `app` builds the router from state and is tested without a server (`oneshot`); `serve` binds
//! it. Counters are read at scrape time from the pipelines' own atomics, so metrics cost nothing
//! on the record path.

use crate::pipeline::chain::StageSpec;
use crate::pipeline::metrics::{LATENCY_BUCKETS_US, PipelineMetrics, Status};
use crate::tables::Tables;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// What the API sees of one running pipeline.
#[derive(Debug, Clone)]
pub struct PipelineView {
    /// Its counters and status.
    pub metrics: Arc<PipelineMetrics>,
    /// Its lookup tables.
    pub tables: Tables,
    /// Its transform chain.
    pub stages: Vec<Arc<StageSpec>>,
}

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The pipelines, in configuration order.
    pub pipelines: Arc<Vec<PipelineView>>,
}

/// The router: `/healthz`, `/readyz`, `/metrics`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
}

/// Ready when every pipeline is running (connected, partitions assigned); otherwise 503 with
/// each pipeline's status.
async fn readyz(State(state): State<AppState>) -> Response {
    let statuses: Vec<serde_json::Value> = state
        .pipelines
        .iter()
        .map(|p| serde_json::json!({ "pipeline": p.metrics.name, "status": status_text(&p.metrics.status()) }))
        .collect();
    let ready = state.pipelines.iter().all(|p| p.metrics.status() == Status::Running);
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(serde_json::json!({ "ready": ready, "pipelines": statuses }))).into_response()
}

fn status_text(status: &Status) -> String {
    match status {
        Status::Starting => "starting".into(),
        Status::Running => "running".into(),
        Status::Stopping => "stopping".into(),
        Status::Stopped => "stopped".into(),
        Status::Failed(error) => format!("failed: {error}"),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut registry = Registry::with_prefix("sluice");
    registry.register_collector(Box::new(Snapshot(state)));
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Reads every pipeline's counters at scrape time.
#[derive(Debug)]
struct Snapshot(AppState);

type Labels = Vec<(&'static str, String)>;

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, series: &[(Labels, u64)]) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        ConstCounter::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, series: &[(Labels, i64)]) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let pipelines = &self.0.pipelines;
        let per_pipeline = |read: &dyn Fn(&PipelineMetrics) -> u64| -> Vec<(Labels, u64)> {
            pipelines.iter().map(|p| (vec![("pipeline", p.metrics.name.clone())], read(&p.metrics))).collect()
        };
        counter(&mut encoder, "records_consumed", "Records consumed from the inputs.", &per_pipeline(&|m| m.records_in.load(Relaxed)))?;
        counter(&mut encoder, "records_produced", "Records written to the outputs.", &per_pipeline(&|m| m.records_out.load(Relaxed)))?;
        counter(&mut encoder, "records_failed", "Records whose transform failed.", &per_pipeline(&|m| m.records_failed.load(Relaxed)))?;
        counter(&mut encoder, "dead_letters", "Failed records written to the dead-letter topic.", &per_pipeline(&|m| m.dead_lettered.load(Relaxed)))?;
        counter(&mut encoder, "records_skipped", "Failed records skipped (on_error = skip).", &per_pipeline(&|m| m.skipped.load(Relaxed)))?;
        counter(&mut encoder, "instance_restarts", "Transform instances started afresh after a trap.", &per_pipeline(&|m| m.instance_restarts.load(Relaxed)))?;
        let up: Vec<(Labels, i64)> =
            pipelines.iter().map(|p| (vec![("pipeline", p.metrics.name.clone())], (p.metrics.status() == Status::Running) as i64)).collect();
        gauge(&mut encoder, "pipeline_running", "1 when the pipeline is consuming, 0 otherwise.", &up)?;

        let mut lag = Vec::new();
        for p in pipelines.iter() {
            for ((topic, partition), value) in p.metrics.lag.lock().unwrap().iter() {
                let labels = vec![("pipeline", p.metrics.name.clone()), ("topic", topic.clone()), ("partition", partition.to_string())];
                lag.push((labels, *value));
            }
        }
        gauge(&mut encoder, "consumer_lag", "Records not yet consumed, per input partition.", &lag)?;

        let mut modules = Vec::new();
        for p in pipelines.iter() {
            for (stage, spec) in p.stages.iter().enumerate() {
                let labels = vec![
                    ("pipeline", p.metrics.name.clone()),
                    ("stage", stage.to_string()),
                    ("module", spec.name.clone()),
                    ("version", spec.version.clone()),
                ];
                modules.push((labels, 1));
            }
        }
        gauge(&mut encoder, "module_info", "The module running in each transform slot.", &modules)?;

        let (mut entries, mut bytes) = (Vec::new(), Vec::new());
        for p in pipelines.iter() {
            for table in p.tables.iter() {
                let labels = vec![("pipeline", p.metrics.name.clone()), ("table", table.name.clone())];
                entries.push((labels.clone(), table.len() as i64));
                bytes.push((labels, table.bytes() as i64));
            }
        }
        gauge(&mut encoder, "table_entries", "Keys held by each lookup table.", &entries)?;
        gauge(&mut encoder, "table_bytes", "Memory counted against each lookup table's cap.", &bytes)?;

        let mut histogram = encoder.encode_descriptor(
            "batch_duration_seconds",
            "Time to run one batch through the transform chain.",
            None,
            MetricType::Histogram,
        )?;
        for p in pipelines.iter() {
            let m = &p.metrics;
            let mut cumulative = 0;
            let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_US
                .iter()
                .zip(&m.batch_latency_buckets)
                .map(|(bound, count)| {
                    cumulative += count.load(Relaxed);
                    (*bound as f64 / 1e6, cumulative)
                })
                .collect();
            cumulative += m.batch_latency_buckets[LATENCY_BUCKETS_US.len()].load(Relaxed);
            buckets.push((f64::INFINITY, cumulative));
            let sum = m.batch_latency_us_sum.load(Relaxed) as f64 / 1e6;
            let labels: Labels = vec![("pipeline", m.name.clone())];
            histogram.encode_family(&labels)?.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                sum,
                m.batches.load(Relaxed),
                &buckets,
                None,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
