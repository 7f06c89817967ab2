//! The HTTP side of `sluice run`: the control API under `/api/v1`, the dashboard at `/`, health,
//! readiness and Prometheus metrics.
//!
//! `app` builds the router from state and is tested without a server (`oneshot`); `serve` binds
//! it. What `/api/v1` receives and answers is typed in [`model`], and its OpenAPI document is
//! generated from those types ([`ApiDoc`]). Every error is JSON `{"error": "..."}`; a 500 hides
//! its cause from the client and logs it, a 507 says which state file could not be written.

mod access;
mod fleet;
mod metrics;
pub mod model;
mod stats;
mod ui;
mod v1;

use crate::config::KafkaConfig;
use crate::control::{ControlError, ControlPlane, store::StoreError};
use crate::pipeline::metrics::Status;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

pub use access::Access;
pub use v1::{ApiDoc, openapi_json};

/// How many costly requests may run at once; more are answered 429 with `Retry-After`. Each
/// holds a core (tries), memory (uploads, read whole to be checked) or a Kafka client (dead
/// letters), so their number is what bounds what clients can make the sidecar spend.
#[derive(Debug)]
struct Gates {
    tries: Arc<tokio::sync::Semaphore>,
    uploads: Arc<tokio::sync::Semaphore>,
    dead_letter_reads: Arc<tokio::sync::Semaphore>,
}

impl Default for Gates {
    fn default() -> Self {
        let gate = |n| Arc::new(tokio::sync::Semaphore::new(n));
        Gates {
            tries: gate(2),
            uploads: gate(2),
            dead_letter_reads: gate(4),
        }
    }
}

/// A place in `gate`, or 429 saying what is busy.
fn enter(
    gate: &Arc<tokio::sync::Semaphore>,
    what: &str,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    gate.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many {what} are running already: try again in a second"),
        )
        .retry_after(1)
    })
}

/// Readers of dead-letter topics, by topic.
type DeadLetterReaders = Arc<
    std::sync::Mutex<
        std::collections::HashMap<String, Arc<std::sync::Mutex<crate::kafka::TopicReader>>>,
    >,
>;

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Modules, deployments and the running pipelines.
    pub control: Arc<ControlPlane>,
    /// Bearer token that routes which change anything require, if set.
    pub token: Option<Arc<str>>,
    /// Bearer token that reads of records and settings require, if set (see [`Access`]).
    pub read_token: Option<Arc<str>>,
    /// Host names it may be reached by besides IP addresses and `localhost`, lowercase.
    allowed_hosts: Arc<[String]>,
    /// Bounds on costly requests running at once.
    gates: Arc<Gates>,
    /// A reader per dead-letter topic, made at its first read and shared by every request.
    dead_letter_readers: DeadLetterReaders,
    /// Becomes true when the server stops: long requests (event streams, tries) end.
    closing: tokio::sync::watch::Receiver<bool>,
    close: Arc<tokio::sync::watch::Sender<bool>>,
    /// Kafka client properties, to read dead letters; `None` where there is no Kafka.
    pub kafka: Option<Arc<KafkaConfig>>,
    stats: tokio::sync::watch::Receiver<Arc<model::Stats>>,
}

impl AppState {
    /// State for `control`'s pipelines; starts sampling their rates once a second, so it must
    /// be called inside a Tokio runtime.
    pub fn new(control: Arc<ControlPlane>, access: Access, kafka: Option<KafkaConfig>) -> Self {
        let stats = stats::start_sampling(control.clone());
        let (close, closing) = tokio::sync::watch::channel(false);
        AppState {
            gates: Arc::new(Gates::default()),
            dead_letter_readers: Default::default(),
            closing,
            close: Arc::new(close),
            control,
            token: access.token.map(Arc::from),
            read_token: access.read_token.map(Arc::from),
            allowed_hosts: (access.allowed_hosts.iter())
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            kafka: kafka.map(Arc::new),
            stats,
        }
    }
}

/// The router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .nest("/api/v1", v1::routes())
        .fallback(ui::serve)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::same_site,
        ))
        .layer(axum::middleware::from_fn(json_errors))
        .with_state(state)
}

/// The longest URI a request may have.
const MAX_URI_BYTES: usize = 8 * 1024;

/// Makes every error JSON `{"error": "..."}`, including those the router and the extractors
/// answer themselves in plain text (405, a path that does not decode, a malformed query).
async fn json_errors(request: Request, next: Next) -> Response {
    // No route takes a long URI; one past this is refused here, in JSON. (Past what the HTTP
    // server itself parses, 64 KiB, it answers 414 or 431 without a body.)
    let length = request.uri().to_string().len();
    if length > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!("the URI is {length} bytes long; at most {MAX_URI_BYTES} are taken"),
        )
        .into_response();
    }
    let response = next.run(request).await;
    let status = response.status();
    let is_json = (response.headers().get(header::CONTENT_TYPE))
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let error = if text.is_empty() {
        let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
        match status {
            StatusCode::METHOD_NOT_ALLOWED => {
                format!("{reason}: see /api/v1/openapi.json for each route's methods")
            }
            _ => reason,
        }
    } else {
        text
    };
    let mut json = (status, axum::Json(model::ErrorBody { error })).into_response();
    // Keep what the error said beside its body (`Allow`, `Retry-After`).
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().insert(name.clone(), value.clone());
        }
    }
    json
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let close = state.close.clone();
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Event streams and tries end, so that the graceful stop does not wait on them.
            let _ = close.send(true);
        })
        .await
}

/// Ready when every pipeline is running (connected, partitions assigned); otherwise 503 with
/// each pipeline's status.
async fn readyz(State(state): State<AppState>) -> Response {
    let pipelines = state.control.pipelines();
    let statuses: Vec<serde_json::Value> = pipelines
        .iter()
        .map(|p| serde_json::json!({ "pipeline": p.name, "status": status_text(&p.metrics.status()) }))
        .collect();
    let ready = pipelines
        .iter()
        .all(|p| p.metrics.status() == Status::Running);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        axum::Json(serde_json::json!({ "ready": ready, "pipelines": statuses })),
    )
        .into_response()
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

/// An error answer: `{"error": message}` with a status. Server errors (5xx) are logged; the
/// cause of an internal error (500) is not shown to the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds a client should wait before trying again (429).
    retry_after: Option<u32>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// This error, telling the client to try again after `seconds`.
    pub fn retry_after(self, seconds: u32) -> Self {
        ApiError {
            retry_after: Some(seconds),
            ..self
        }
    }

    /// A 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A 500 whose cause goes to the log only.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, cause.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, error = %self.message, "API request failed");
        }
        let message = if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            "internal error; the runtime's log has the details".to_string()
        } else {
            self.message
        };
        let mut response =
            (self.status, axum::Json(model::ErrorBody { error: message })).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::BadName(_) | StoreError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            StoreError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            StoreError::UnknownModule(_) | StoreError::UnknownVersion { .. } => {
                StatusCode::NOT_FOUND
            }
            StoreError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            // The user's to fix (the state directory), so the message is shown, not hidden.
            StoreError::Unwritable { .. } => StatusCode::INSUFFICIENT_STORAGE,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Store(e) => e.into(),
            ControlError::UnknownPipeline(_) | ControlError::UnknownSlot { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, e.to_string())
            }
            ControlError::InitFailed { .. } | ControlError::Invalid(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            ControlError::NothingToRollBack { .. } => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            // The fleet's topics are out of reach: the change may be retried.
            ControlError::Fleet(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests;
