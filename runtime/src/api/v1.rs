//! `/api/v1`: modules, pipelines, deploys, the try endpoint, dead letters and the live feed.
//! The routes are described for clients in `openapi.json`, served at `/api/v1/openapi.json`.

use super::{ApiError, AppState, stats};
use crate::engine::{InputBatchBuilder, bytes_json};
use crate::pipeline::Pipeline;
use crate::pipeline::metrics::Status;
use crate::tables::Tables;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// The OpenAPI document of these routes.
pub const OPENAPI: &str = include_str!("openapi.json");
/// Most records one try request may carry.
const MAX_TRY_RECORDS: usize = 10_000;
/// Most dead letters one request may ask for.
const MAX_DEAD_LETTERS: usize = 500;

type ApiResult<T = Json<Value>> = Result<T, ApiError>;

pub(super) fn routes(state: &AppState) -> Router<AppState> {
    // One byte over the cap, so that a module of exactly the cap is accepted and a larger one
    // gets the store's own message.
    let upload_limit = DefaultBodyLimit::max(state.control.store.max_bytes() + 1);
    Router::new()
        .route("/info", get(info))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .route(
            "/modules",
            get(list_modules).post(upload_module).layer(upload_limit),
        )
        .route("/modules/{name}", get(module_versions))
        .route("/modules/{name}/versions/{version}/try", post(try_module))
        .route("/pipelines", get(list_pipelines))
        .route("/pipelines/{name}", get(pipeline))
        .route("/pipelines/{name}/transforms/{index}", put(deploy))
        .route(
            "/pipelines/{name}/transforms/{index}/rollback",
            post(roll_back),
        )
        .route("/pipelines/{name}/pause", post(pause))
        .route("/pipelines/{name}/resume", post(resume))
        .route("/pipelines/{name}/dead-letters", get(dead_letters))
        .route("/events", get(stats::events))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such route: see /api/v1/openapi.json",
            )
        })
}

async fn info(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "contract": crate::engine::CONTRACT,
        "auth_required": state.token.is_some(),
        "max_module_bytes": state.control.store.max_bytes(),
    }))
}

/// Runs blocking work (compiling, instantiating, Kafka reads) off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)?
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    body.map(|Json(t)| t)
        .map_err(|e| ApiError::new(e.status(), e.body_text()))
}

fn number<T: std::str::FromStr>(what: &str, text: &str) -> ApiResult<T> {
    text.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "{what} must be a non-negative integer, not `{text}`"
        ))
    })
}

// ---------------------------------------------------------------------------------- modules

async fn list_modules(State(state): State<AppState>) -> Json<Value> {
    let modules: Vec<Value> = state
        .control
        .store
        .list()
        .into_iter()
        .map(|(name, versions)| json!({ "name": name, "versions": versions }))
        .collect();
    Json(json!({ "modules": modules }))
}

async fn module_versions(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let versions = state.control.store.versions(&name)?;
    Ok(Json(json!({ "name": name, "versions": versions })))
}

#[derive(Deserialize)]
struct UploadQuery {
    name: Option<String>,
}

async fn upload_module(
    State(state): State<AppState>,
    query: Result<Query<UploadQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let name = query
        .name
        .ok_or_else(|| ApiError::bad_request("name the module: POST /api/v1/modules?name=NAME"))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("multipart/")
        || content_type.starts_with("application/x-www-form-urlencoded")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the .wasm file's bytes as the request body (Content-Type: application/wasm), not a form",
        ));
    }
    let max = state.control.store.max_bytes();
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            e.status(),
            format!("the module is more than the {max} bytes allowed (api.max_module_mb)"),
        ),
        _ => ApiError::bad_request(e.body_text()),
    })?;
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty: send the .wasm file's bytes",
        ));
    }
    let (control, module) = (state.control.clone(), name.clone());
    let (version, new) = blocking(move || Ok(control.store.add(&module, &body)?)).await?;
    tracing::info!(module = %name, version = version.version, sha256 = %version.sha256, new, "module uploaded");
    let mut answer = json!({ "name": name });
    answer
        .as_object_mut()
        .unwrap()
        .extend(json!(version).as_object().unwrap().clone());
    Ok((
        if new {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(answer),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TryRequest {
    /// Record values: strings as they are, anything else as its JSON text.
    records: Vec<Value>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// Run with this pipeline's lookup tables.
    pipeline: Option<String>,
}

async fn try_module(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    body: Result<Json<TryRequest>, JsonRejection>,
) -> ApiResult {
    let request = json_body(body)?;
    let version: u32 = number("the version", &version)?;
    if request.records.len() > MAX_TRY_RECORDS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_TRY_RECORDS} records per try"
        )));
    }
    let tables = match &request.pipeline {
        Some(p) => state.control.pipeline(p)?.tables.clone(),
        None => Tables::default(),
    };
    let control = state.control.clone();
    blocking(move || {
        let (_, module) = control.store.get(&name, version)?;
        let config: Vec<(String, String)> = request.config.into_iter().collect();
        let init_failed = |e: crate::engine::InstantiateError| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        };
        let mut instance = control
            .engine()
            .instantiate(&module, &name, &config, &tables)
            .map_err(init_failed)?;
        let mut batch = InputBatchBuilder::new("try", 0);
        for (i, record) in request.records.iter().enumerate() {
            let text = match record {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            batch.push(i as i64, None, None, Some(text.as_bytes()), []);
        }
        let processed = instance.process(batch.batch()).map_err(init_failed)?;
        let mut results: Vec<Value> = (0..request.records.len())
            .map(|_| json!({ "outputs": [], "error": null }))
            .collect();
        for output in processed.outputs() {
            let mut o = output.to_json();
            // Headers as an object, for display; a repeated name keeps its last value.
            let headers: serde_json::Map<String, Value> = output
                .headers()
                .map(|(k, v)| (k.to_string(), bytes_json(v)))
                .collect();
            o["headers"] = Value::Object(headers);
            results[output.input()]["outputs"]
                .as_array_mut()
                .unwrap()
                .push(o);
        }
        for failure in processed.failures() {
            results[failure.input]["error"] = json!(failure.message);
        }
        Ok(Json(json!({ "results": results })))
    })
    .await
}

// -------------------------------------------------------------------------------- pipelines

/// A pipeline as the API shows it.
fn pipeline_json(state: &AppState, p: &Pipeline) -> Value {
    let stats = state.stats();
    let sample = stats
        .pipelines
        .iter()
        .find(|s| s.name == p.name)
        .cloned()
        .unwrap_or_default();
    let (_, stages) = p.deployed.current();
    let slots: Vec<Value> = stages
        .iter()
        .enumerate()
        .map(|(index, s)| {
            json!({
                "index": index,
                "module": s.name,
                "version": s.version,
                "sha256": s.module.sha256,
                "config": s.config.iter().cloned().collect::<BTreeMap<_, _>>(),
                "can_rollback": state.control.can_roll_back(&p.name, index),
            })
        })
        .collect();
    let m = &p.metrics;
    let error = match m.status() {
        Status::Failed(error) => Some(error),
        _ => None,
    };
    json!({
        "name": p.name,
        "status": stats::status_name(p),
        "error": error,
        "inputs": p.inputs,
        "outputs": *p.outputs,
        "dead_letter": p.dead_letter,
        "slots": slots,
        "rates": sample.rates,
        "lag": m.total_lag(),
        "batch_latency_ms": sample.batch_latency_ms,
        "totals": stats::Totals::read(m),
        "swaps": stats::Swaps::read(m),
    })
}

async fn list_pipelines(State(state): State<AppState>) -> Json<Value> {
    let pipelines: Vec<Value> = state
        .control
        .pipelines()
        .iter()
        .map(|p| pipeline_json(&state, p))
        .collect();
    Json(json!({ "pipelines": pipelines }))
}

async fn pipeline(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult {
    Ok(Json(pipeline_json(&state, state.control.pipeline(&name)?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployRequest {
    module: String,
    /// The latest version when absent.
    version: Option<u32>,
    /// The slot's current configuration when absent.
    config: Option<BTreeMap<String, String>>,
}

async fn deploy(
    State(state): State<AppState>,
    Path((name, index)): Path<(String, String)>,
    body: Result<Json<DeployRequest>, JsonRejection>,
) -> ApiResult {
    let request = json_body(body)?;
    let index: usize = number("the transform index", &index)?;
    let control = state.control.clone();
    let pipeline = name.clone();
    blocking(move || {
        let version = match request.version {
            Some(v) => v,
            None => control
                .store
                .versions(&request.module)?
                .last()
                .map_or(0, |v| v.version),
        };
        Ok(control.deploy(&pipeline, index, &request.module, version, request.config)?)
    })
    .await?;
    Ok(Json(pipeline_json(&state, state.control.pipeline(&name)?)))
}

async fn roll_back(
    State(state): State<AppState>,
    Path((name, index)): Path<(String, String)>,
) -> ApiResult {
    let index: usize = number("the transform index", &index)?;
    let control = state.control.clone();
    let pipeline = name.clone();
    blocking(move || Ok(control.roll_back(&pipeline, index)?)).await?;
    Ok(Json(pipeline_json(&state, state.control.pipeline(&name)?)))
}

async fn pause(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult {
    state.control.set_paused(&name, true)?;
    Ok(Json(pipeline_json(&state, state.control.pipeline(&name)?)))
}

async fn resume(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult {
    state.control.set_paused(&name, false)?;
    Ok(Json(pipeline_json(&state, state.control.pipeline(&name)?)))
}

#[derive(Deserialize)]
struct DeadLetterQuery {
    limit: Option<usize>,
}

async fn dead_letters(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<DeadLetterQuery>, QueryRejection>,
) -> ApiResult {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(20).clamp(1, MAX_DEAD_LETTERS);
    let topic = state.control.pipeline(&name)?.dead_letter.clone();
    let (Some(topic), Some(kafka)) = (topic.clone(), state.kafka.clone()) else {
        return Ok(Json(json!({ "topic": topic, "records": [] })));
    };
    let read_topic = topic.clone();
    let records = blocking(move || {
        crate::kafka::read_latest(&kafka, &read_topic, limit, Duration::from_secs(5)).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("cannot read `{read_topic}`: {e}"),
            )
        })
    })
    .await?;
    use rdkafka::message::{Headers, Message};
    let records: Vec<Value> = records
        .iter()
        .map(|m| {
            let headers: serde_json::Map<String, Value> = m
                .headers()
                .into_iter()
                .flat_map(|h| h.iter())
                .map(|h| (h.key.to_string(), bytes_json(h.value)))
                .collect();
            json!({
                "partition": m.partition(),
                "offset": m.offset(),
                "timestamp": m.timestamp().to_millis(),
                "key": bytes_json(m.key()),
                "value": bytes_json(m.payload()),
                "headers": headers,
            })
        })
        .collect();
    Ok(Json(json!({ "topic": topic, "records": records })))
}
