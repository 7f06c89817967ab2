//! Router tests without a server.

use super::*;
use crate::tables::Table;
use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;

fn state(status: Status) -> (AppState, Arc<PipelineMetrics>) {
    let metrics = Arc::new(PipelineMetrics::new("unify"));
    metrics.set_status(status);
    metrics.records_in.store(10, Relaxed);
    metrics.records_out.store(9, Relaxed);
    metrics.dead_lettered.store(1, Relaxed);
    metrics.observe_batch(std::time::Duration::from_micros(300));
    metrics.lag.lock().unwrap().insert(("timezone1".into(), 0), 42);
    let table = Arc::new(Table::new("customers", 1 << 20));
    table.apply(b"5", Some(b"fred")).unwrap();
    let view = PipelineView { metrics: metrics.clone(), tables: Tables::new([table]), stages: Vec::new() };
    (AppState { pipelines: Arc::new(vec![view]) }, metrics)
}

async fn get(state: AppState, path: &str) -> (StatusCode, String) {
    let response = app(state).oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn healthz_is_always_ok() {
    assert_eq!(get(state(Status::Starting).0, "/healthz").await, (StatusCode::OK, "ok\n".into()));
}

#[tokio::test]
async fn readyz_follows_the_pipelines() {
    let (status, body) = get(state(Status::Starting).0, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, r#"{"pipelines":[{"pipeline":"unify","status":"starting"}],"ready":false}"#);
    let (status, _) = get(state(Status::Running).0, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = get(state(Status::Failed("table `x` would grow".into())).0, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("failed: table `x` would grow"), "{body}");
}

#[tokio::test]
async fn metrics_use_conventional_names_and_labels() {
    let (status, body) = get(state(Status::Running).0, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        r#"sluice_records_consumed_total{pipeline="unify"} 10"#,
        r#"sluice_records_produced_total{pipeline="unify"} 9"#,
        r#"sluice_dead_letters_total{pipeline="unify"} 1"#,
        r#"sluice_pipeline_running{pipeline="unify"} 1"#,
        r#"sluice_consumer_lag{pipeline="unify",topic="timezone1",partition="0"} 42"#,
        r#"sluice_table_entries{pipeline="unify",table="customers"} 1"#,
        r#"sluice_batch_duration_seconds_bucket{le="0.0005",pipeline="unify"} 1"#,
        r#"sluice_batch_duration_seconds_count{pipeline="unify"} 1"#,
    ] {
        assert!(body.lines().any(|l| l == line), "missing `{line}` in:\n{body}");
    }
    assert!(body.ends_with("# EOF\n"));
}

#[tokio::test]
async fn unknown_routes_are_404() {
    assert_eq!(get(state(Status::Running).0, "/nope").await.0, StatusCode::NOT_FOUND);
}
