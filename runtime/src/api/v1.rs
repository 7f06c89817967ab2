//! `/api/v1`: modules, pipelines, deploys, the try endpoint, dead letters and the live feed.
//! Each handler answers with a type of [`model`](super::model) and is described by its
//! `#[utoipa::path]`; [`ApiDoc`] gathers them into the OpenAPI document served at
//! `/api/v1/openapi.json` (and kept in `openapi.json` beside this file for the dashboard's build).

use super::model::{
    DeadLetter, DeadLetters, DeployRequest, ErrorBody, HeaderValue, Info, Module, ModuleList,
    Pipeline, PipelineList, RecordBytes, Slot, TryOutput, TryRequest, TryResponse, TryResult,
    Uploaded, WasmBytes,
};
use super::{ApiError, AppState, fleet, stats};
use crate::engine::InputBatchBuilder;
use crate::pipeline::metrics::Status;
use crate::tables::Tables;
use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use utoipa::OpenApi;

/// Most records one try request may carry.
const MAX_TRY_RECORDS: usize = 10_000;
/// The most time a try may take replaying records one at a time after its transform trapped
/// (each replay may take the CPU budget).
const TRY_BUDGET: Duration = Duration::from_secs(10);

/// Sets its flag when dropped: a request handler's future is dropped when its client leaves.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}
/// Most dead letters one request may ask for.
const MAX_DEAD_LETTERS: usize = 500;

type ApiResult<T> = Result<T, ApiError>;

/// The OpenAPI document of these routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice control API",
        description = "Upload WebAssembly transforms, deploy them into running pipelines without a restart, roll back, pause, try modules on sample records, watch rates live. Every error is JSON {\"error\": \"...\"}. Routes that change anything need `Authorization: Bearer <api.token>` when a token is configured."
    ),
    servers((url = "/api/v1")),
    paths(
        info, openapi, list_modules, upload_module, module_versions, try_module, list_pipelines,
        pipeline, put_pipeline, delete_pipeline, deploy, roll_back, pause, resume, dead_letters, stats::events, fleet::fleet
    ),
    modifiers(&Finish)
)]
pub struct ApiDoc;

/// Adds the bearer token scheme that the changing routes name, and drops the tags utoipa derives
/// from Rust module names (they mean nothing to a client).
struct Finish;

impl utoipa::Modify for Finish {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post];
            for operation in operations.into_iter().flatten() {
                operation.tags = None;
            }
        }
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// [`ApiDoc`] as JSON, as served and as kept in `openapi.json`.
pub fn openapi_json() -> &'static str {
    static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
        let mut text = ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serialises");
        text.push('\n');
        text
    });
    &DOCUMENT
}

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/info", get(info))
        .route("/openapi.json", get(openapi))
        .route("/modules", get(list_modules).post(upload_module))
        .route("/modules/{name}", get(module_versions))
        .route("/modules/{name}/versions/{version}/try", post(try_module))
        .route("/pipelines", get(list_pipelines))
        .route(
            "/pipelines/{name}",
            get(pipeline).put(put_pipeline).delete(delete_pipeline),
        )
        .route("/pipelines/{name}/transforms/{slot}", put(deploy))
        .route(
            "/pipelines/{name}/transforms/{slot}/rollback",
            post(roll_back),
        )
        .route("/pipelines/{name}/pause", post(pause))
        .route("/pipelines/{name}/resume", post(resume))
        .route("/pipelines/{name}/dead-letters", get(dead_letters))
        .route("/events", get(stats::events))
        .route("/fleet", get(fleet::fleet))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such route: see /api/v1/openapi.json",
            )
        })
}

#[utoipa::path(
    get,
    path = "/info",
    summary = "Runtime version, contract, whether a token is needed, upload cap",
    responses((status = 200, description = "Info", body = Info)),
)]
async fn info(State(state): State<AppState>) -> Json<Info> {
    Json(Info {
        version: env!("CARGO_PKG_VERSION").to_string(),
        contract: crate::engine::CONTRACT.to_string(),
        auth_required: state.token.is_some(),
        read_auth_required: state.read_token.is_some(),
        max_module_bytes: state.control.store.max_bytes() as u64,
    })
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    summary = "This document",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json")),
)]
async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json())
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

#[utoipa::path(
    get,
    path = "/modules",
    summary = "Every stored module and its versions",
    responses((status = 200, description = "Modules", body = ModuleList)),
)]
async fn list_modules(State(state): State<AppState>) -> Json<ModuleList> {
    let modules = state
        .control
        .store
        .list()
        .into_iter()
        .map(|(name, versions)| Module { name, versions })
        .collect();
    Json(ModuleList { modules })
}

#[utoipa::path(
    get,
    path = "/modules/{name}",
    summary = "One module's versions",
    params(("name" = String, Path, description = "Module name")),
    responses(
        (status = 200, description = "Module", body = Module),
        (status = 404, description = "No such module", body = ErrorBody),
    ),
)]
async fn module_versions(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Module>> {
    let versions = state.control.store.versions(&name)?;
    Ok(Json(Module { name, versions }))
}

#[derive(Deserialize)]
struct UploadQuery {
    name: Option<String>,
}

#[utoipa::path(
    post,
    path = "/modules",
    summary = "Upload a transform component as the next version of a module",
    security(("bearer" = [])),
    params((
        "name" = String, Query, description = "The module's name",
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
    )),
    request_body(
        content(
            (WasmBytes = "application/wasm"),
            (WasmBytes = "application/octet-stream"),
        ),
        description = "The .wasm component's bytes"
    ),
    responses(
        (status = 201, description = "Stored as a new version", body = Uploaded),
        (status = 200, description = "These bytes were already stored under this name", body = Uploaded),
        (status = 400, description = "No name, or an empty body", body = ErrorBody),
        (status = 401, description = "Token missing or wrong", body = ErrorBody),
        (status = 413, description = "Larger than api.max_module_mb", body = ErrorBody),
        (status = 415, description = "Not sent as application/wasm (or application/octet-stream)", body = ErrorBody),
        (status = 422, description = "Not a Sluice transform component, with what is wrong, or a bad name", body = ErrorBody),
        (status = 429, description = "Too many uploads at once; try again after Retry-After seconds", body = ErrorBody),
        (status = 507, description = "The state directory cannot be written; nothing was stored", body = ErrorBody),
    ),
)]
async fn upload_module(
    State(state): State<AppState>,
    query: Result<Query<UploadQuery>, QueryRejection>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ApiResult<(StatusCode, Json<Uploaded>)> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let name = query
        .name
        .ok_or_else(|| ApiError::bad_request("name the module: POST /api/v1/modules?name=NAME"))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // Only the types a web page cannot send cross-site without asking first (a form's are
    // refused), so that a page the user visits cannot upload.
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !["application/wasm", "application/octet-stream"].contains(&media_type) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "send the .wasm file's bytes as the request body with Content-Type: application/wasm (not `{content_type}`)"
            ),
        ));
    }
    crate::control::store::check_name(&name)?;
    // Read only while few are: each is held whole to be checked.
    let _place = super::enter(&state.gates.uploads, "uploads")?;
    let body = read_module(body, state.control.store.max_bytes()).await?;
    let (control, module) = (state.control.clone(), name.clone());
    let (version, new) = blocking(move || Ok(control.add_module(&module, &body)?)).await?;
    tracing::info!(module = %name, version = version.version, sha256 = %version.sha256, new, "module uploaded");
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(Uploaded { name, version })))
}

/// Reads an uploaded module, refusing it as soon as its first bytes are not a component's or
/// it grows past `max` bytes, rather than after reading it all.
async fn read_module(body: axum::body::Body, max: usize) -> ApiResult<Vec<u8>> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    let mut checked = false;
    let refused = |e| ApiError::from(crate::control::store::StoreError::Invalid(e));
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
        bytes.extend_from_slice(&chunk);
        if bytes.len() > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the module is more than the {max} bytes allowed (api.max_module_mb)"),
            ));
        }
        if !checked && bytes.len() >= 8 {
            crate::engine::check_header(&bytes).map_err(refused)?;
            checked = true;
        }
    }
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty: send the .wasm file's bytes",
        ));
    }
    crate::engine::check_header(&bytes).map_err(refused)?;
    Ok(bytes)
}

#[utoipa::path(
    post,
    path = "/modules/{name}/versions/{version}/try",
    summary = "Run a module version over sample records",
    security(("bearer" = [])),
    params(
        ("name" = String, Path, description = "Module name"),
        ("version" = u32, Path, description = "Module version", minimum = 1),
    ),
    request_body = TryRequest,
    responses(
        (status = 200, description = "Outputs and error per record, in order", body = TryResponse),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 413, description = "The body is larger than 2 MiB", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json", body = ErrorBody),
        (status = 401, description = "Token missing or wrong", body = ErrorBody),
        (status = 404, description = "No such module, version or pipeline", body = ErrorBody),
        (status = 422, description = "init refused the configuration, or the body is not a TryRequest", body = ErrorBody),
        (status = 429, description = "Too many tries at once; try again after Retry-After seconds", body = ErrorBody),
    ),
)]
async fn try_module(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    body: Result<Json<TryRequest>, JsonRejection>,
) -> ApiResult<Json<TryResponse>> {
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
    // The place is held by the work, which may outlive this request by one record's budget.
    let place = super::enter(&state.gates.tries, "tries")?;
    // A try stops replaying records when its client leaves (this future is dropped), when its
    // time is up, or when the server stops.
    let left = Arc::new(AtomicBool::new(false));
    let _leaving = SetOnDrop(left.clone());
    let deadline = Instant::now() + TRY_BUDGET;
    let closing = state.closing.clone();
    let control = state.control.clone();
    blocking(move || {
        let _place = place;
        let (_, module) = control.store.get(&name, version)?;
        let config: Vec<(String, String)> = (request.config.into_iter())
            .map(|(k, v)| (k, v.0))
            .collect();
        let init_failed = |e: crate::engine::InstantiateError| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        };
        let mut instance = control
            .engine()
            .instantiate(&module, &name, &config, &tables)
            .map_err(init_failed)?;
        instance.stop_replaying_when(move || {
            left.load(Relaxed) || Instant::now() > deadline || *closing.borrow()
        });
        let mut batch = InputBatchBuilder::new("try", 0);
        for (i, record) in request.records.iter().enumerate() {
            let text = match record {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            batch.push(i as i64, None, None, Some(text.as_bytes()), []);
        }
        let processed = instance.process(batch.batch()).map_err(init_failed)?;
        let mut results = vec![TryResult::default(); request.records.len()];
        for output in processed.outputs() {
            results[output.input()].outputs.push(TryOutput {
                topic: RecordBytes::of(output.topic()),
                key: RecordBytes::of(output.key()),
                headers: output
                    .headers()
                    .map(|(k, v)| (k.to_string(), HeaderValue(RecordBytes::of(v))))
                    .collect(),
                timestamp: output.timestamp(),
                value: RecordBytes::of(output.value()),
            });
        }
        for failure in processed.failures() {
            results[failure.input].error = Some(failure.message.clone());
        }
        Ok(Json(TryResponse { results }))
    })
    .await
}

// -------------------------------------------------------------------------------- pipelines

/// A pipeline as the API shows it: live figures, with the rates of the latest sample.
fn pipeline_view(state: &AppState, p: &crate::pipeline::Pipeline) -> Pipeline {
    let stats = state.stats();
    let sample = stats.pipelines.iter().find(|s| s.name == p.name);
    let (_, stages) = p.deployed.current();
    let slots = stages
        .iter()
        .enumerate()
        .map(|(index, s)| Slot {
            index,
            module: s.name.clone(),
            version: s.version,
            sha256: s.module.sha256.clone(),
            config: s.config.iter().cloned().collect(),
            can_rollback: state.control.can_roll_back(&p.name, index),
        })
        .collect();
    let (definition, last_change) = state.control.definition(&p.name).unzip();
    let m = &p.metrics;
    let error = match m.status() {
        Status::Failed(error) => Some(error),
        _ => None,
    };
    Pipeline {
        stats: super::model::PipelineStats {
            name: p.name.clone(),
            status: stats::status_of(p),
            rates: sample.map(|s| s.rates).unwrap_or_default(),
            lag: m.total_lag(),
            batch_latency_ms: sample.map_or(0.0, |s| s.batch_latency_ms),
            totals: super::model::Totals::read(m),
            swaps: super::model::Swaps::read(m),
            state: super::model::StateStats::read(m),
            fleet: sample.and_then(|s| s.fleet.clone()),
        },
        error,
        inputs: p.inputs.clone(),
        outputs: p.outputs.to_vec(),
        dead_letter: p.dead_letter.clone(),
        slots,
        guarantee: p.guarantee,
        transactions: (p.guarantee == crate::config::Guarantee::ExactlyOnce)
            .then(|| super::model::Transactions::read(m)),
        definition,
        last_change: last_change.flatten(),
    }
}

/// The answer of the routes that change a pipeline: the pipeline as it is now.
fn pipeline_answer(state: &AppState, name: &str) -> ApiResult<Json<Pipeline>> {
    let pipeline = state.control.pipeline(name)?;
    Ok(Json(pipeline_view(state, &pipeline)))
}

#[utoipa::path(
    get,
    path = "/pipelines",
    summary = "Every pipeline with status, slots and rates",
    responses((status = 200, description = "Pipelines", body = PipelineList)),
)]
async fn list_pipelines(State(state): State<AppState>) -> Json<PipelineList> {
    let pipelines = state
        .control
        .pipelines()
        .iter()
        .map(|p| pipeline_view(&state, p))
        .collect();
    Json(PipelineList { pipelines })
}

#[utoipa::path(
    get,
    path = "/pipelines/{pipeline}",
    summary = "One pipeline",
    params(("pipeline" = String, Path, description = "Pipeline name")),
    responses(
        (status = 200, description = "Pipeline", body = Pipeline),
        (status = 404, description = "No such pipeline", body = ErrorBody),
    ),
)]
async fn pipeline(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Pipeline>> {
    pipeline_answer(&state, &name)
}

#[utoipa::path(
    put,
    path = "/pipelines/{pipeline}",
    summary = "Create or replace a pipeline: its topics, settings and chain, as a `[[pipeline]]` of sluice.toml says them",
    description = "Modules are stored ones: `NAME` (its latest version) or `NAME@VERSION`. A change of the chain alone (modules, their configuration, slots added, removed or reordered) is swapped in at each partition's next batch boundary when the number of slots stays; other changes drain, commit and start the pipeline anew. A slot that keeps its module keeps its rollback history.",
    security(("bearer" = [])),
    params(("pipeline" = String, Path, description = "Pipeline name")),
    request_body = crate::config::PipelineConfig,
    responses(
        (status = 200, description = "Replaced", body = Pipeline),
        (status = 201, description = "Created", body = Pipeline),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 413, description = "The body is larger than 2 MiB", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json", body = ErrorBody),
        (status = 401, description = "Token missing or wrong", body = ErrorBody),
        (status = 422, description = "The definition cannot run: the error names the field (a setting out of range, a module that is not stored or does not start)", body = ErrorBody),
        (status = 507, description = "The state directory cannot be written; nothing was changed", body = ErrorBody),
    ),
)]
async fn put_pipeline(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<crate::config::PipelineConfig>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Pipeline>)> {
    let definition = json_body(body)?;
    if definition.name != name {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "name: the body names `{}` but the path `{name}`; a pipeline is renamed by creating the new one and deleting the old",
                definition.name
            ),
        ));
    }
    let control = state.control.clone();
    let created = blocking(move || Ok(control.put_pipeline(definition)?)).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, pipeline_answer(&state, &name)?))
}

#[utoipa::path(
    delete,
    path = "/pipelines/{pipeline}",
    summary = "Delete a pipeline: it drains, commits and stops; its consumer group keeps its offsets",
    security(("bearer" = [])),
    params(("pipeline" = String, Path, description = "Pipeline name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Token missing or wrong", body = ErrorBody),
        (status = 404, description = "No such pipeline", body = ErrorBody),
        (status = 507, description = "The state directory cannot be written; nothing was changed", body = ErrorBody),
    ),
)]
async fn delete_pipeline(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let control = state.control.clone();
    blocking(move || Ok(control.delete_pipeline(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    put,
    path = "/pipelines/{pipeline}/transforms/{slot}",
    summary = "Hot swap: deploy a module version into a slot; every partition switches at its next batch boundary",
    security(("bearer" = [])),
    params(
        ("pipeline" = String, Path, description = "Pipeline name"),
        ("slot" = u32, Path, description = "The transform slot: its place in the chain, from 0"),
    ),
    request_body = DeployRequest,
    responses(
        (status = 200, description = "Deployed", body = Pipeline),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 413, description = "The body is larger than 2 MiB", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json", body = ErrorBody),
        (status = 401, description = "Token missing or wrong", body = ErrorBody),
        (status = 404, description = "No such pipeline, slot, module or version", body = ErrorBody),
        (status = 422, description = "The module did not start with the slot's configuration (the running version stays), or the body is not a Deploy", body = ErrorBody),
        (status = 507, description = "The state directory cannot be written; nothing was changed", body = ErrorBody),
    ),
)]
async fn deploy(
    State(state): State<AppState>,
    Path((name, index)): Path<(String, String)>,
    body: Result<Json<DeployRequest>, JsonRejection>,
) -> ApiResult<Json<Pipeline>> {
    let request = json_body(body)?;
    let index: usize = number("the transform slot", &index)?;
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
        let config = (request.config).map(|c| c.into_iter().map(|(k, v)| (k, v.0)).collect());
        Ok(control.deploy(&pipeline, index, &request.module, version, config)?)
    })
    .await?;
    pipeline_answer(&state, &name)
}

#[utoipa::path(
    post,
    path = "/pipelines/{pipeline}/transforms/{slot}/rollback",
    summary = "Return a slot to what ran before its last deploy",
    security(("bearer" = [])),
    params(
        ("pipeline" = String, Path, description = "Pipeline name"),
        ("slot" = u32, Path, description = "The transform slot: its place in the chain, from 0"),
    ),
    responses(
        (status = 200, description = "Rolled back", body = Pipeline),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Token missing or wrong", body = ErrorBody),
        (status = 404, description = "No such pipeline or slot", body = ErrorBody),
        (status = 409, description = "Nothing to roll back to", body = ErrorBody),
        (status = 507, description = "The state directory cannot be written; nothing was changed", body = ErrorBody),
    ),
)]
async fn roll_back(
    State(state): State<AppState>,
    Path((name, index)): Path<(String, String)>,
) -> ApiResult<Json<Pipeline>> {
    let index: usize = number("the transform slot", &index)?;
    let control = state.control.clone();
    let pipeline = name.clone();
    blocking(move || Ok(control.roll_back(&pipeline, index)?)).await?;
    pipeline_answer(&state, &name)
}

#[utoipa::path(
    post,
    path = "/pipelines/{pipeline}/pause",
    summary = "Stop consuming; the consumer keeps its group membership",
    security(("bearer" = [])),
    params(("pipeline" = String, Path, description = "Pipeline name")),
    responses(
        (status = 200, description = "Paused", body = Pipeline),
        (status = 401, description = "Token missing or wrong", body = ErrorBody),
        (status = 404, description = "No such pipeline", body = ErrorBody),
        (status = 507, description = "The state directory cannot be written; nothing was changed", body = ErrorBody),
    ),
)]
async fn pause(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Pipeline>> {
    let (control, pipeline) = (state.control.clone(), name.clone());
    blocking(move || Ok(control.set_paused(&pipeline, true)?)).await?;
    pipeline_answer(&state, &name)
}

#[utoipa::path(
    post,
    path = "/pipelines/{pipeline}/resume",
    summary = "Go on consuming",
    security(("bearer" = [])),
    params(("pipeline" = String, Path, description = "Pipeline name")),
    responses(
        (status = 200, description = "Resumed", body = Pipeline),
        (status = 401, description = "Token missing or wrong", body = ErrorBody),
        (status = 404, description = "No such pipeline", body = ErrorBody),
        (status = 507, description = "The state directory cannot be written; nothing was changed", body = ErrorBody),
    ),
)]
async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Pipeline>> {
    let (control, pipeline) = (state.control.clone(), name.clone());
    blocking(move || Ok(control.set_paused(&pipeline, false)?)).await?;
    pipeline_answer(&state, &name)
}

#[derive(Deserialize)]
struct DeadLetterQuery {
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/pipelines/{pipeline}/dead-letters",
    summary = "The newest records of the pipeline's dead-letter topic, with their error headers",
    params(
        ("pipeline" = String, Path, description = "Pipeline name"),
        ("limit" = Option<u32>, Query, description = "How many records, at most; 20 when absent",
            minimum = 1, maximum = 500),
    ),
    responses(
        (status = 200, description = "Dead letters, oldest first", body = DeadLetters),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 404, description = "No such pipeline", body = ErrorBody),
        (status = 502, description = "The topic could not be read", body = ErrorBody),
        (status = 429, description = "Too many dead-letter reads at once; try again after Retry-After seconds", body = ErrorBody),
    ),
)]
async fn dead_letters(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<DeadLetterQuery>, QueryRejection>,
) -> ApiResult<Json<DeadLetters>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(20).clamp(1, MAX_DEAD_LETTERS);
    let topic = state.control.pipeline(&name)?.dead_letter.clone();
    let (Some(read_topic), Some(kafka)) = (topic.clone(), state.kafka.clone()) else {
        return Ok(Json(DeadLetters {
            topic,
            records: Vec::new(),
        }));
    };
    // One reader per topic, made once and shared (a Kafka client is threads and
    // connections); a few reads at a time, each holding a blocking thread.
    let place = super::enter(&state.gates.dead_letter_reads, "dead-letter reads")?;
    let readers = state.dead_letter_readers.clone();
    let records = blocking(move || {
        let _place = place;
        let failed = |e: crate::kafka::ReadError| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("cannot read `{read_topic}`: {e}"),
            )
        };
        let timeout = Duration::from_secs(5);
        let reader = {
            let mut readers = readers.lock().unwrap_or_else(|e| e.into_inner());
            match readers.get(&read_topic) {
                Some(reader) => reader.clone(),
                None => {
                    let reader = crate::kafka::TopicReader::new(
                        &kafka,
                        "sluice-read-latest",
                        "sluice-api",
                        &read_topic,
                        timeout,
                    )
                    .map_err(failed)?;
                    let reader = Arc::new(std::sync::Mutex::new(reader));
                    readers.insert(read_topic.clone(), reader.clone());
                    reader
                }
            }
        };
        let reader = reader.lock().unwrap_or_else(|e| e.into_inner());
        crate::kafka::read_latest_with(&reader, limit, timeout).map_err(failed)
    })
    .await?;
    use rdkafka::message::{Headers, Message};
    let records = records
        .iter()
        .map(|m| DeadLetter {
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis(),
            key: RecordBytes::of(m.key()),
            value: RecordBytes::of(m.payload()),
            headers: m
                .headers()
                .into_iter()
                .flat_map(|h| h.iter())
                .map(|h| (h.key.to_string(), HeaderValue(RecordBytes::of(h.value))))
                .collect(),
        })
        .collect();
    Ok(Json(DeadLetters { topic, records }))
}
