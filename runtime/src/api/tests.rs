//! Router tests without a server: a real control plane and engine over a temporary state
//! directory, and pipelines that are not connected to Kafka.

use super::*;
use crate::config::Config;
use crate::engine::tests::guest_bytes;
use crate::engine::{Engine, Limits};
use crate::pipeline::Pipeline;
use crate::pipeline::metrics::PipelineMetrics;
use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};
use std::sync::atomic::Ordering::Relaxed;
use tower::ServiceExt;

struct Fixture {
    state: AppState,
    pipeline: Arc<Pipeline>,
    _dir: tempfile::TempDir,
}

fn guest_path(name: &str) -> String {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../target/wasm32-wasip2/release/{name}.wasm"));
    path.to_string_lossy().into_owned()
}

/// The configuration file of [`fixture`]: one pipeline `unify` whose only slot runs the test
/// guest, with a lookup table.
fn fixture_file() -> String {
    format!(
        "[[pipeline]]\nname = \"unify\"\ninputs = [\"timezone1\"]\noutputs = [\"unified\"]\ndead_letter = \"unified.dlq\"\n\
         [[pipeline.table]]\nname = \"customers\"\ntopic = \"customers\"\n\
         [[pipeline.transform]]\nmodule = {:?}\n",
        guest_path("test_guest")
    )
}

/// A control plane over `dir` that applied `file` and made its pipelines ready (not started:
/// no Kafka), as `sluice run` does at start.
fn control_plane(dir: &std::path::Path, file: &str, max_module_bytes: usize) -> Arc<ControlPlane> {
    let config = Config::parse(file).unwrap();
    let engine = Engine::new(Limits::default()).unwrap();
    let control = Arc::new(ControlPlane::open(dir, engine, max_module_bytes).unwrap());
    control
        .apply_file(&config.pipeline, "file sluice.toml")
        .unwrap();
    control.start_pipelines(None, &[]).unwrap();
    control
}

/// [`fixture_file`]'s runtime, its table holding customer 5.
fn fixture(token: Option<&str>, max_module_bytes: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let control = control_plane(dir.path(), &fixture_file(), max_module_bytes);
    let pipeline = control.pipeline("unify").unwrap();
    let table = pipeline.tables.iter().next().unwrap();
    table.apply(b"5", Some(b"fred")).unwrap();
    let access = Access {
        token: token.map(str::to_string),
        allowed_hosts: vec!["sluice.internal".into()],
        ..Access::default()
    };
    let state = AppState::new(control, access, None);
    Fixture {
        state,
        pipeline,
        _dir: dir,
    }
}

fn running() -> Fixture {
    let f = fixture(None, 64 << 20);
    f.pipeline.metrics.set_status(Status::Running);
    f
}

async fn send(state: &AppState, request: Request<Body>) -> (StatusCode, String) {
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn get(state: &AppState, path: &str) -> (StatusCode, String) {
    send(state, Request::get(path).body(Body::empty()).unwrap()).await
}

async fn get_json(state: &AppState, path: &str) -> (StatusCode, Value) {
    let (status, body) = get(state, path).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")),
    )
}

async fn call(
    state: &AppState,
    method: &str,
    path: &str,
    body: impl Into<Body>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let (status, body) = send(state, request.body(body.into()).unwrap()).await;
    if status == StatusCode::NO_CONTENT {
        assert_eq!(body, "", "{method} {path}: 204 with a body");
        return (status, Value::Null);
    }
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}")),
    )
}

async fn upload(state: &AppState, name: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    let request = Request::post(format!("/api/v1/modules?name={name}"))
        .header("content-type", "application/wasm");
    let (status, body) = send(state, request.body(Body::from(bytes)).unwrap()).await;
    (status, serde_json::from_str(&body).unwrap())
}

#[tokio::test]
async fn healthz_is_always_ok() {
    assert_eq!(
        get(&fixture(None, 1 << 20).state, "/healthz").await,
        (StatusCode::OK, "ok\n".into())
    );
}

#[tokio::test]
async fn readyz_follows_the_pipelines() {
    let f = fixture(None, 1 << 20);
    let (status, body) = get(&f.state, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        r#"{"pipelines":[{"pipeline":"unify","status":"starting"}],"ready":false}"#
    );
    f.pipeline.metrics.set_status(Status::Running);
    assert_eq!(get(&f.state, "/readyz").await.0, StatusCode::OK);
    f.pipeline
        .metrics
        .set_status(Status::Failed("table `x` would grow".into()));
    let (status, body) = get(&f.state, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("failed: table `x` would grow"), "{body}");
}

#[tokio::test]
async fn a_dead_partition_worker_fails_readiness_with_the_reason_and_is_counted() {
    let f = running();
    assert_eq!(get(&f.state, "/readyz").await.0, StatusCode::OK);
    f.pipeline
        .worker_died("timezone1", 2, "index out of bounds");
    assert!(f.pipeline.has_failed(), "the pipeline's threads stop");
    let (status, body) = get(&f.state, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body.contains(
            "failed: the worker of partition timezone1/2 died (index out of bounds); the pipeline stopped, restart the process"
        ),
        "{body}"
    );
    let (_, metrics) = get(&f.state, "/metrics").await;
    assert!(
        metrics.contains(r#"sluice_worker_deaths_total{pipeline="unify"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn metrics_use_conventional_names_and_labels() {
    let f = running();
    let m: &PipelineMetrics = &f.pipeline.metrics;
    m.consumed.add("timezone1", 10);
    m.produced.add("unified", 9);
    m.dead_lettered.store(1, Relaxed);
    m.observe_batch(std::time::Duration::from_micros(300));
    m.lag.lock().unwrap().insert(("timezone1".into(), 0), 42);
    let (status, body) = get(&f.state, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let sha = &f.pipeline.deployed.current().1[0].module.sha256;
    for line in [
        r#"sluice_records_consumed_total{pipeline="unify",topic="timezone1"} 10"#.to_string(),
        r#"sluice_records_produced_total{pipeline="unify",topic="unified"} 9"#.into(),
        r#"sluice_records_failed_total{pipeline="unify",topic="timezone1"} 0"#.into(),
        r#"sluice_dead_letters_total{pipeline="unify"} 1"#.into(),
        r#"sluice_pipeline_running{pipeline="unify"} 1"#.into(),
        r#"sluice_consumer_lag{pipeline="unify",topic="timezone1",partition="0"} 42"#.into(),
        r#"sluice_table_entries{pipeline="unify",table="customers"} 1"#.into(),
        r#"sluice_batch_duration_seconds_bucket{le="0.0005",pipeline="unify"} 1"#.into(),
        r#"sluice_batch_duration_seconds_count{pipeline="unify"} 1"#.into(),
        format!(
            r#"sluice_module_info{{pipeline="unify",slot="0",module="test_guest",version="1",sha256="{sha}"}} 1"#
        ),
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing `{line}` in:\n{body}"
        );
    }
    assert!(body.ends_with("# EOF\n"));
}

#[tokio::test]
async fn the_batch_duration_histogram_is_consistent() {
    let f = running();
    let m: &PipelineMetrics = &f.pipeline.metrics;
    for us in [300, 300, 5_000, 60_000_000] {
        m.observe_batch(std::time::Duration::from_micros(us));
    }
    let (_, body) = get(&f.state, "/metrics").await;
    let value = |line: &str| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
    let buckets: Vec<u64> = (body.lines())
        .filter(|l| l.starts_with("sluice_batch_duration_seconds_bucket"))
        .map(value)
        .collect();
    let count = (body.lines())
        .find(|l| l.starts_with("sluice_batch_duration_seconds_count"))
        .map(value);
    // Cumulative, by bound: 100 µs, 250 µs, 500 µs, 1 ms, 2.5 ms, 5 ms, ... 1 s, +Inf (where
    // the 60 s batch is), and +Inf is `_count`.
    assert_eq!(buckets, [0, 0, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 4], "{body}");
    assert_eq!(count, Some(4), "{body}");
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let f = running();
    assert_eq!(get(&f.state, "/nope").await.0, StatusCode::NOT_FOUND);
    let (status, body) = get_json(&f.state, "/api/v1/nope").await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (
            StatusCode::NOT_FOUND,
            "no such route: see /api/v1/openapi.json"
        )
    );
}

#[tokio::test]
async fn uploads_are_validated_stored_and_versioned() {
    let f = fixture(None, 4 << 20);
    let tz = guest_bytes("tz_normaliser");
    let (status, body) = upload(&f.state, "tz", tz.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        (
            body["name"].as_str(),
            body["version"].as_u64(),
            body["size"].as_u64()
        ),
        (Some("tz"), Some(1), Some(tz.len() as u64))
    );
    assert_eq!(
        body["exports"],
        json!([crate::engine::COLUMNAR_EXPORT, crate::engine::EXPORT])
    );
    assert_eq!(body["sha256"].as_str().unwrap().len(), 64);
    // The same bytes again: the same version.
    let (status, again) = upload(&f.state, "tz", tz).await;
    assert_eq!((status, &again), (StatusCode::OK, &body));

    let (status, body) = upload(
        &f.state,
        "broken",
        b"this is a text file, not a component".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("not a WebAssembly file"),
        "{body}"
    );
    let core = wat::parse_str("(module)").unwrap();
    let (status, body) = upload(&f.state, "core", core).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("core WebAssembly module, not a component"),
        "{body}"
    );
    let mut big = b"\0asm\x0d\0\x01\0".to_vec();
    big.resize((4 << 20) + 10, 0);
    let (status, body) = upload(&f.state, "big", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("more than the 4194304 bytes allowed"),
        "{body}"
    );
    let (status, body) = upload(&f.state, "no%20spaces", b"\0asm".to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("module name `no spaces`"),
        "{body}"
    );
    let (status, body) = call(&f.state, "POST", "/api/v1/modules", Body::from("x"), None).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (
            StatusCode::BAD_REQUEST,
            "name the module: POST /api/v1/modules?name=NAME"
        )
    );
    let form = Request::post("/api/v1/modules?name=x")
        .header("content-type", "multipart/form-data; boundary=b");
    assert_eq!(
        send(&f.state, form.body(Body::from("--b--")).unwrap())
            .await
            .0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );

    let (_, listed) = get_json(&f.state, "/api/v1/modules").await;
    let names: Vec<&str> = listed["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["test_guest", "tz"]);
    let (status, one) = get_json(&f.state, "/api/v1/modules/tz").await;
    assert_eq!(
        (status, one["versions"].as_array().unwrap().len()),
        (StatusCode::OK, 1)
    );
    let (status, missing) = get_json(&f.state, "/api/v1/modules/nope").await;
    assert_eq!(
        (status, missing["error"].as_str().unwrap()),
        (StatusCode::NOT_FOUND, "no module is called `nope`")
    );
}

#[tokio::test]
async fn changes_need_the_token_when_one_is_set() {
    let f = fixture(Some("s3cret"), 64 << 20);
    let (_, info) = get_json(&f.state, "/api/v1/info").await;
    assert_eq!(info["auth_required"], json!(true));
    let (status, body) = call(
        &f.state,
        "POST",
        "/api/v1/pipelines/unify/pause",
        Body::empty(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{body}"
    );
    let (status, _) = call(
        &f.state,
        "POST",
        "/api/v1/pipelines/unify/pause",
        Body::empty(),
        Some("guess"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!f.pipeline.paused.load(Relaxed));
    let (status, body) = call(
        &f.state,
        "POST",
        "/api/v1/pipelines/unify/pause",
        Body::empty(),
        Some("s3cret"),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("starting"))
    );
    assert!(f.pipeline.paused.load(Relaxed));
    // Reading needs no token.
    assert_eq!(get(&f.state, "/api/v1/pipelines").await.0, StatusCode::OK);
}

#[tokio::test]
async fn deploy_roll_back_pause_and_resume() {
    let f = running();
    let state = &f.state;
    upload(state, "test_guest", guest_bytes("pii_stripper")).await;
    let (_, pipelines) = get_json(state, "/api/v1/pipelines").await;
    let slot = &pipelines["pipelines"][0]["slots"][0];
    assert_eq!(
        (
            slot["module"].as_str(),
            slot["version"].as_u64(),
            slot["can_rollback"].as_bool()
        ),
        (Some("test_guest"), Some(1), Some(false))
    );

    let deploy = |body: Value| Body::from(body.to_string());
    let (status, p) = call(
        state,
        "PUT",
        "/api/v1/pipelines/unify/transforms/0",
        deploy(json!({"module": "test_guest", "version": 2})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(
        (
            p["slots"][0]["version"].as_u64(),
            p["slots"][0]["can_rollback"].as_bool()
        ),
        (Some(2), Some(true))
    );
    assert_eq!(f.pipeline.deployed.current().1[0].version, 2);

    // A module that does not start is refused, and the running one stays.
    let bad = json!({"module": "test_guest", "version": 1, "config": {"init_error": "no thanks"}});
    let (status, body) = call(
        state,
        "PUT",
        "/api/v1/pipelines/unify/transforms/0",
        deploy(bad),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("test_guest version 1 did not start, so the running version stays"),
        "{body}"
    );
    assert!(
        body["error"].as_str().unwrap().contains("no thanks"),
        "{body}"
    );
    assert_eq!(f.pipeline.deployed.current().1[0].version, 2);

    for (path, body, status, error) in [
        (
            "/api/v1/pipelines/nope/transforms/0",
            json!({"module": "test_guest"}),
            StatusCode::NOT_FOUND,
            "no pipeline is called `nope`",
        ),
        (
            "/api/v1/pipelines/unify/transforms/3",
            json!({"module": "test_guest"}),
            StatusCode::NOT_FOUND,
            "pipeline `unify` has 1 transform slot(s), numbered from 0: there is no slot 3",
        ),
        (
            "/api/v1/pipelines/unify/transforms/x",
            json!({"module": "test_guest"}),
            StatusCode::BAD_REQUEST,
            "the transform slot must be a non-negative integer, not `x`",
        ),
        (
            "/api/v1/pipelines/unify/transforms/0",
            json!({"module": "test_guest", "version": 9}),
            StatusCode::NOT_FOUND,
            "module `test_guest` has no version 9 (latest: 2)",
        ),
    ] {
        let (got, answer) = call(state, "PUT", path, deploy(body), None).await;
        assert_eq!(
            (got, answer["error"].as_str().unwrap()),
            (status, error),
            "{path}"
        );
    }
    let (status, body) = call(
        state,
        "PUT",
        "/api/v1/pipelines/unify/transforms/0",
        Body::from("{\"modul\": 1}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `modul`"),
        "{body}"
    );

    let (status, p) = call(
        state,
        "POST",
        "/api/v1/pipelines/unify/transforms/0/rollback",
        Body::empty(),
        None,
    )
    .await;
    assert_eq!(
        (status, p["slots"][0]["version"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let (status, body) = call(
        state,
        "POST",
        "/api/v1/pipelines/unify/transforms/0/rollback",
        Body::empty(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["error"],
        "slot 0 of pipeline `unify` has no earlier version to roll back to"
    );

    let (_, p) = call(
        state,
        "POST",
        "/api/v1/pipelines/unify/pause",
        Body::empty(),
        None,
    )
    .await;
    assert_eq!(p["status"], "paused");
    let (_, p) = call(
        state,
        "POST",
        "/api/v1/pipelines/unify/resume",
        Body::empty(),
        None,
    )
    .await;
    assert_eq!(p["status"], "running");
}

#[tokio::test]
async fn deployments_survive_a_restart() {
    let f = running();
    upload(&f.state, "test_guest", guest_bytes("pii_stripper")).await;
    let body = Body::from(json!({"module": "test_guest", "version": 2}).to_string());
    assert_eq!(
        call(
            &f.state,
            "PUT",
            "/api/v1/pipelines/unify/transforms/0",
            body,
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    call(
        &f.state,
        "POST",
        "/api/v1/pipelines/unify/pause",
        Body::empty(),
        None,
    )
    .await;

    // A second runtime over the same state directory and configuration file: the deploy and
    // the pause were the latest changes, and stay.
    let restart = |file: &str| {
        let control = control_plane(f._dir.path(), file, 64 << 20);
        let pipeline = control.pipeline("unify").unwrap();
        (control, pipeline)
    };
    let (control, pipeline) = restart(&fixture_file());
    let stage = pipeline.deployed.current().1[0].clone();
    assert_eq!((stage.name.as_str(), stage.version), ("test_guest", 2));
    assert!(pipeline.paused.load(Relaxed));
    assert!(control.can_roll_back("unify", 0));
    let (_, change) = control.definition("unify").unwrap();
    assert_eq!(change.unwrap().what, "paused");
    drop(control);

    // The file edited since the deploy: the file's latest word wins.
    let edited = format!("{}config = {{ log = \"true\" }}\n", fixture_file());
    let (control, pipeline) = restart(&edited);
    let stage = pipeline.deployed.current().1[0].clone();
    assert_eq!(
        (stage.version, stage.config.clone()),
        (1, vec![("log".to_string(), "true".to_string())])
    );
    let (_, change) = control.definition("unify").unwrap();
    let change = change.unwrap();
    assert_eq!(
        (change.by.as_str(), change.what.as_str()),
        ("file sluice.toml", "updated")
    );
}

#[tokio::test]
async fn try_runs_a_version_on_sample_records() {
    let f = running();
    upload(&f.state, "tz", guest_bytes("tz_normaliser")).await;
    let records = json!({"records": [
        "{\"date\": \"2024-02-05 10:01:52.884548 -0500\", \"message\": \"0\"}",
        {"date": "yesterday"},
    ], "config": {"unit": "s"}});
    let (status, body) = call(
        &f.state,
        "POST",
        "/api/v1/modules/tz/versions/1/try",
        Body::from(records.to_string()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(
        results[0]["outputs"][0]["value"],
        "{\"timestamp\":1707145312.884548,\"message\":\"0\"}"
    );
    assert_eq!(results[0]["error"], Value::Null);
    assert_eq!(results[1]["outputs"], json!([]));
    assert!(
        results[1]["error"].as_str().unwrap().contains("yesterday"),
        "{body}"
    );

    let bad = json!({"records": [], "config": {"unit": "fortnights"}});
    let (status, body) = call(
        &f.state,
        "POST",
        "/api/v1/modules/tz/versions/1/try",
        Body::from(bad.to_string()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"].as_str().unwrap().contains("fortnights"),
        "{body}"
    );
    let (status, _) = call(
        &f.state,
        "POST",
        "/api/v1/modules/tz/versions/2/try",
        Body::from("{\"records\": []}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_live_feed_sends_stats_events() {
    let f = running();
    f.pipeline.metrics.consumed.add("timezone1", 500);
    let response = app(f.state.clone())
        .oneshot(Request::get("/api/v1/events").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body().into_data_stream();
    let mut text = String::new();
    while !text.contains("\"pipelines\":[{") {
        use futures::StreamExt;
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.starts_with("event: stats\ndata: {\"time\":"), "{text}");
    assert!(
        text.contains("\"name\":\"unify\",\"status\":\"running\""),
        "{text}"
    );
}

#[tokio::test]
async fn dead_letters_without_kafka_are_empty_and_openapi_lists_every_route() {
    let f = running();
    let (status, body) = get_json(&f.state, "/api/v1/pipelines/unify/dead-letters").await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"topic": "unified.dlq", "records": []})
        )
    );
    let (status, doc) = get_json(&f.state, "/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    for route in [
        "/info",
        "/modules",
        "/modules/{name}",
        "/modules/{name}/versions/{version}/try",
        "/pipelines",
        "/pipelines/{pipeline}",
        "/pipelines/{pipeline}/transforms/{slot}",
        "/pipelines/{pipeline}/transforms/{slot}/rollback",
        "/pipelines/{pipeline}/pause",
        "/pipelines/{pipeline}/resume",
        "/pipelines/{pipeline}/dead-letters",
        "/events",
        "/fleet",
    ] {
        assert!(
            paths.iter().any(|p| *p == route),
            "{route} is not documented"
        );
    }
    let (status, body) = get(&f.state, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("<title>"), "{body}");
}

#[tokio::test]
async fn a_process_running_alone_is_the_only_member_of_its_fleet_view() {
    let f = running();
    f.state.control.set_member(crate::control::Member {
        id: "m1".into(),
        address: "http://127.0.0.1:8080/".into(),
        started_at: 1_000,
    });
    f.pipeline
        .metrics
        .assigned
        .lock()
        .unwrap()
        .extend([("timezone1".to_string(), 0), ("timezone1".to_string(), 3)]);
    f.pipeline
        .metrics
        .lag
        .lock()
        .unwrap()
        .insert(("timezone1".into(), 3), 7);
    let (status, fleet) = get_json(&f.state, "/api/v1/fleet").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fleet["name"], Value::Null);
    assert_eq!(fleet["member"], "m1");
    let members = fleet["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{fleet}");
    let m = &members[0];
    assert_eq!(
        (&m["id"], &m["address"], &m["alive"], &m["this_member"]),
        (
            &json!("m1"),
            &json!("http://127.0.0.1:8080/"),
            &json!(true),
            &json!(true)
        )
    );
    assert_eq!(m["started_at"], 1_000);
    assert_eq!(
        m["pipelines"][0]["partitions"],
        json!([{"topic": "timezone1", "partition": 0}, {"topic": "timezone1", "partition": 3}])
    );
    assert_eq!(m["pipelines"][0]["lag"], 7);
    assert_eq!(m["pipelines"][0]["status"], "running");
    // The configuration file's module, stored under its file name.
    assert_eq!(
        m["pipelines"][0]["slots"],
        json!([{"module": "test_guest", "version": 1}])
    );
    // Alone, the pipeline's figures are this process's: no fleet totals.
    let (_, pipeline) = get_json(&f.state, "/api/v1/pipelines/unify").await;
    assert_eq!(pipeline["fleet"], Value::Null);
}

/// The dashboard's TypeScript types are generated from `openapi.json` (web-ui/build.sh), so the
/// file must be the document the API serves. `SLUICE_UPDATE_OPENAPI=1` rewrites it.
#[tokio::test]
async fn the_committed_openapi_document_is_the_served_one() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/openapi.json");
    let (status, served) = get(&running().state, "/api/v1/openapi.json").await;
    assert_eq!((status, served.as_str()), (StatusCode::OK, openapi_json()));
    if std::env::var_os("SLUICE_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &served).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap();
    assert!(
        committed == served,
        "{} is not the document the API serves: run \
         `SLUICE_UPDATE_OPENAPI=1 cargo test -p sluice --lib api::tests::the_committed_openapi_document_is_the_served_one`, \
         then `bash web-ui/build.sh` to check the dashboard against it",
        path.display()
    );
}

/// The state directory replaced by a file after start-up: every write under it fails, even as
/// root (where permissions would not stop one).
fn make_state_unwritable(dir: &std::path::Path) -> std::path::PathBuf {
    let moved = dir.with_extension("moved");
    std::fs::rename(dir, &moved).unwrap();
    std::fs::write(dir, "not a directory").unwrap();
    moved
}

#[tokio::test]
async fn changes_the_state_directory_cannot_keep_are_refused_and_not_made() {
    let f = running();
    let state = &f.state;
    upload(state, "test_guest", guest_bytes("pii_stripper")).await;
    let (_, before) = get_json(state, "/api/v1/pipelines").await;
    let (_, modules_before) = get_json(state, "/api/v1/modules").await;
    let dir = f._dir.path().to_path_buf();
    let moved = make_state_unwritable(&dir);

    let deploy = json!({"module": "test_guest", "version": 2}).to_string();
    for (method, path, body) in [
        ("PUT", "/api/v1/pipelines/unify/transforms/0", deploy),
        ("POST", "/api/v1/pipelines/unify/pause", String::new()),
    ] {
        let (status, answer) = call(state, method, path, Body::from(body), None).await;
        assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{path}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.starts_with(&format!(
                "cannot write {}",
                dir.join("deployments.json").display()
            )) && error.ends_with(
                "the state directory (state_dir) must be writable, and nothing was changed"
            ),
            "{error}"
        );
    }
    let (status, answer) = upload(state, "tz", guest_bytes("tz_normaliser")).await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("must be writable"),
        "{answer}"
    );

    // Nothing changed: not the running chain, not what the API shows.
    assert_eq!(f.pipeline.deployed.current().1[0].version, 1);
    assert!(!f.pipeline.paused.load(Relaxed));
    let (_, after) = get_json(state, "/api/v1/pipelines").await;
    let view = |p: &Value| (p["status"].clone(), p["slots"].clone());
    assert_eq!(view(&after["pipelines"][0]), view(&before["pipelines"][0]));
    assert_eq!(get_json(state, "/api/v1/modules").await.1, modules_before);

    // Writable again: the same changes go through.
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(&moved, &dir).unwrap();
    let (status, p) = call(
        state,
        "POST",
        "/api/v1/pipelines/unify/pause",
        Body::empty(),
        None,
    )
    .await;
    assert_eq!((status, &p["status"]), (StatusCode::OK, &json!("paused")));
}

#[tokio::test]
async fn pipelines_are_created_changed_and_deleted_through_the_api() {
    let f = fixture(Some("secret"), 64 << 20);
    let store = &f.state.control.store;
    store.add("tz", &guest_bytes("tz_normaliser")).unwrap();
    store.add("pii", &guest_bytes("pii_stripper")).unwrap();
    let put = |name: &str, body: Value| {
        let state = f.state.clone();
        let path = format!("/api/v1/pipelines/{name}");
        async move {
            call(
                &state,
                "PUT",
                &path,
                Body::from(body.to_string()),
                Some("secret"),
            )
            .await
        }
    };
    let definition = json!({
        "name": "orders", "inputs": ["orders"], "outputs": ["orders.clean"],
        "dead_letter": "orders.dlq", "batch_size": 500, "guarantee": "exactly-once",
        "transform": [{"module": "pii"}, {"module": "tz@1", "config": {"field": "at"}}],
    });

    // Changes need the token.
    let (status, _) = call(
        &f.state,
        "PUT",
        "/api/v1/pipelines/orders",
        Body::from(definition.to_string()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = put("orders", definition.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "starting", "not started: no Kafka here");
    assert_eq!(body["guarantee"], "exactly-once");
    assert_eq!(body["definition"]["batch_size"], 500);
    let modules: Vec<&Value> = (body["definition"]["transform"].as_array().unwrap())
        .iter()
        .map(|t| &t["module"])
        .collect();
    assert_eq!(
        modules,
        [&json!("pii@1"), &json!("tz@1")],
        "versions resolved"
    );
    assert_eq!(body["definition"]["transform"][1]["config"]["field"], "at");
    assert_eq!(body["last_change"]["by"], "api");
    assert_eq!(body["last_change"]["what"], "created");
    let (_, list) = get_json(&f.state, "/api/v1/pipelines").await;
    let names: Vec<&Value> = (list["pipelines"].as_array().unwrap().iter())
        .map(|p| &p["name"])
        .collect();
    assert_eq!(names, [&json!("unify"), &json!("orders")]);

    // The chain reordered: same settings, as many slots, swapped in place.
    let before = f.state.control.pipeline("orders").unwrap();
    let mut reordered = definition.clone();
    reordered["transform"] =
        json!([{"module": "tz", "config": {"field": "at"}}, {"module": "pii"}]);
    let (status, body) = put("orders", reordered).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["slots"][0]["module"], "tz");
    assert_eq!(body["last_change"]["what"], "updated");
    let after = f.state.control.pipeline("orders").unwrap();
    assert!(Arc::ptr_eq(&before, &after), "swapped in place");
    // A slot removed: the pipeline starts anew.
    let mut shorter = definition.clone();
    shorter["transform"] = json!([{"module": "pii"}]);
    let (status, body) = put("orders", shorter).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["slots"].as_array().unwrap().len(), 1);
    assert!(!Arc::ptr_eq(
        &after,
        &f.state.control.pipeline("orders").unwrap()
    ));

    // Refused definitions name what is wrong, and change nothing.
    let refused = [
        (
            json!({"batch_size": 0}),
            "pipeline (orders).batch_size: 0 is out of range 1..=100000",
        ),
        (
            json!({"inputs": ["orders.clean"]}),
            "`orders.clean` is both an input and an output",
        ),
        (
            json!({"transform": [{"module": "nope"}]}),
            "pipeline `orders`.transform[0].module: no module is called `nope`",
        ),
        (
            json!({"transform": [{"module": "tz@7"}]}),
            "module `tz` has no version 7 (it has 1 to 1)",
        ),
        (
            json!({"transform": [{"module": "x.wasm"}]}),
            "`x.wasm` is a file: store it first",
        ),
        (
            json!({"transform": [{"module": "tz", "config": {"bogus": "1"}}]}),
            "tz@1 does not start with this configuration",
        ),
        (
            json!({"name": "other"}),
            "the body names `other` but the path `orders`",
        ),
        (json!({"inputs": "orders"}), "inputs"),
        (json!({"colour": "red"}), "unknown field `colour`"),
    ];
    for (change, expected) in refused {
        let mut body = definition.clone();
        for (key, value) in change.as_object().unwrap() {
            body[key] = value.clone();
        }
        let (status, answer) = put("orders", body).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{change}: {answer}"
        );
        let message = answer["error"].as_str().unwrap();
        assert!(message.contains(expected), "{change}: {message}");
    }
    let (_, body) = get_json(&f.state, "/api/v1/pipelines/orders").await;
    assert_eq!(body["definition"]["transform"].as_array().unwrap().len(), 1);

    // Deleted: gone from the list; a second delete finds nothing.
    let delete = || {
        call(
            &f.state,
            "DELETE",
            "/api/v1/pipelines/orders",
            Body::empty(),
            Some("secret"),
        )
    };
    assert_eq!(delete().await.0, StatusCode::NO_CONTENT);
    assert_eq!(
        get(&f.state, "/api/v1/pipelines/orders").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(delete().await.0, StatusCode::NOT_FOUND);
    let saved = std::fs::read_to_string(f._dir.path().join("deployments.json")).unwrap();
    assert!(!saved.contains("\"orders\""), "{saved}");
}

#[tokio::test]
async fn a_web_page_cannot_reach_the_api_by_another_name_or_change_it_from_another_site() {
    let f = running();
    let request = |method: &str, path: &str, headers: &[(&str, &str)]| {
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(Body::empty()).unwrap()
    };
    // DNS rebinding: a page's own name pointed at this machine; reads are refused too, since
    // they show records.
    let (status, body) = send(
        &f.state,
        request("GET", "/api/v1/pipelines", &[("host", "evil.example:8080")]),
    )
    .await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{body}");
    assert!(
        body.contains("this runtime is not `evil.example:8080`"),
        "{body}"
    );
    for host in [
        "127.0.0.1:8080",
        "[::1]:8080",
        "localhost:8080",
        "SLUICE.internal",
        "10.1.2.3",
    ] {
        let (status, _) = send(
            &f.state,
            request("GET", "/api/v1/pipelines", &[("host", host)]),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{host}");
    }
    // A change from another origin is refused; from the dashboard's own, or from a client that
    // is not a browser (no Origin), it is not.
    let pause = |origin: Option<&'static str>| {
        let mut headers = vec![("host", "127.0.0.1:8080")];
        headers.extend(origin.map(|o| ("origin", o)));
        request("POST", "/api/v1/pipelines/unify/pause", &headers)
    };
    for origin in ["http://evil.example", "null", "http://127.0.0.1:9999"] {
        let (status, body) = send(&f.state, pause(Some(origin))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}: {body}");
        assert!(
            body.contains("a change sent by another site is refused"),
            "{body}"
        );
    }
    assert!(!f.pipeline.paused.load(Relaxed));
    assert_eq!(
        send(&f.state, pause(Some("http://127.0.0.1:8080"))).await.0,
        StatusCode::OK
    );
    assert_eq!(send(&f.state, pause(None)).await.0, StatusCode::OK);
    // An upload must say it is a module: a form or text/plain (which a page can send anywhere)
    // is refused.
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let upload = Request::post("/api/v1/modules?name=tz")
            .header("content-type", content_type)
            .body(Body::from(guest_bytes("tz_normaliser")))
            .unwrap();
        let (status, body) = send(&f.state, upload).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}: {body}"
        );
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let f = fixture(Some("secret"), 64 << 20);
    for header in ["bearer secret", "BEARER secret", "Bearer  secret "] {
        let request = Request::post("/api/v1/pipelines/unify/pause")
            .header("authorization", header)
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&f.state, request).await.0, StatusCode::OK, "{header}");
    }
    let request = Request::post("/api/v1/pipelines/unify/pause")
        .header("authorization", "Basic secret")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f.state, request).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tries_are_bounded_in_number_and_stop_when_their_client_leaves() {
    let f = running();
    upload(&f.state, "looper", guest_bytes("test_guest")).await;
    // Every record spins until its CPU budget (2 s) runs out: 30 of them replayed one at a
    // time would hold a core for a minute.
    let spinning = json!({
        "records": vec!["spin"; 30],
        "config": {"loop_on": "spin"},
    })
    .to_string();
    let try_request = |body: String| {
        Request::post("/api/v1/modules/looper/versions/1/try")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let clients: Vec<_> = (0..2)
        .map(|_| tokio::spawn(send_owned(f.state.clone(), try_request(spinning.clone()))))
        .collect();
    // Two run; a third is told to come back.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while f.state.gates.tries.available_permits() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the two tries did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let refused = app(f.state.clone())
        .oneshot(try_request(spinning.clone()))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "1");
    // Both clients leave: their tries stop after the record they are on.
    for client in &clients {
        client.abort();
    }
    let left = std::time::Instant::now();
    let quick = json!({"records": ["a"]}).to_string();
    loop {
        let (status, _) = send(&f.state, try_request(quick.clone())).await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            left.elapsed() < std::time::Duration::from_secs(15),
            "the abandoned tries still run"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// [`send`] for a spawned task.
async fn send_owned(state: AppState, request: Request<Body>) -> (StatusCode, String) {
    send(&state, request).await
}

#[tokio::test]
async fn a_connected_dashboard_does_not_hold_up_a_graceful_stop() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = running();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, f.state.clone(), async {
        let _ = stopped.await;
    }));
    // A dashboard's live feed: an event stream that never ends by itself.
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET /api/v1/events HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut first = vec![0; 4096];
    let n = stream.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).contains("200 OK"));

    stop.send(()).unwrap();
    let finished = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
    assert!(finished.is_ok(), "the server waited on the event stream");
    // The stream was closed, not left hanging.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut rest),
    )
    .await;
    assert!(read.is_ok(), "the event stream was not closed");
}

#[tokio::test]
async fn every_error_is_json_even_the_routers_own() {
    let f = running();
    for (method, path, expected) in [
        ("DELETE", "/api/v1/modules", StatusCode::METHOD_NOT_ALLOWED),
        ("GET", "/api/v1/pipelines/%FF", StatusCode::BAD_REQUEST),
        (
            "GET",
            "/api/v1/pipelines/unify/dead-letters?limit=x",
            StatusCode::BAD_REQUEST,
        ),
        (
            "PUT",
            "/api/v1/pipelines/unify/transforms/0",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "GET",
            &format!("/api/v1/modules/{}", "a".repeat(20_000)),
            StatusCode::URI_TOO_LONG,
        ),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let response = app(f.state.clone()).oneshot(request).await.unwrap();
        assert_eq!(response.status(), expected, "{method} {path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{method} {path}"
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            !body["error"].as_str().unwrap().is_empty(),
            "{method} {path}: {body}"
        );
    }
}

#[tokio::test]
async fn numbers_in_a_deploys_or_a_trys_config_are_taken_as_in_the_file() {
    let f = running();
    let records = json!({"records": ["x", "7"], "config": {"fail_on": 7}});
    let (status, body) = call(
        &f.state,
        "POST",
        "/api/v1/modules/test_guest/versions/1/try",
        Body::from(records.to_string()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["results"][0]["error"].is_null() && body["results"][1]["error"].is_string(),
        "{body}"
    );
    let deploy = json!({"module": "test_guest", "config": {"fail_on": 7}});
    let (status, body) = call(
        &f.state,
        "PUT",
        "/api/v1/pipelines/unify/transforms/0",
        Body::from(deploy.to_string()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["slots"][0]["config"]["fail_on"], "7");
}

#[tokio::test]
async fn a_read_token_lets_someone_watch_without_changing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let control = control_plane(dir.path(), &fixture_file(), 64 << 20);
    let access = Access {
        token: Some("write".into()),
        read_token: Some("read".into()),
        ..Access::default()
    };
    let state = AppState::new(control, access, None);
    let request = |method: &str, path: &str, token: Option<&str>| {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.body(Body::empty()).unwrap()
    };
    let status = |method: &'static str, path: &'static str, token: Option<&'static str>| {
        let state = state.clone();
        async move { send(&state, request(method, path, token)).await.0 }
    };
    // What the page needs to start, and health, stay open.
    for path in ["/api/v1/info", "/api/v1/openapi.json", "/healthz"] {
        assert_eq!(status("GET", path, None).await, StatusCode::OK, "{path}");
    }
    let (_, info) = get_json(&state, "/api/v1/info").await;
    assert_eq!(info["read_auth_required"], json!(true));
    // Records and settings need either token.
    for path in [
        "/api/v1/pipelines",
        "/api/v1/modules",
        "/api/v1/pipelines/unify/dead-letters",
    ] {
        assert_eq!(
            status("GET", path, None).await,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        assert_eq!(
            status("GET", path, Some("wrong")).await,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        assert_eq!(
            status("GET", path, Some("read")).await,
            StatusCode::OK,
            "{path}"
        );
        assert_eq!(
            status("GET", path, Some("write")).await,
            StatusCode::OK,
            "{path}"
        );
    }
    // The event stream takes it in its query, as a browser's EventSource cannot send headers.
    let events = Request::get("/api/v1/events?access_token=read")
        .body(Body::empty())
        .unwrap();
    let response = app(state.clone()).oneshot(events).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The read token changes nothing.
    let pause = "/api/v1/pipelines/unify/pause";
    assert_eq!(
        status("POST", pause, Some("read")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(status("POST", pause, Some("write")).await, StatusCode::OK);
}
