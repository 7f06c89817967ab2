//! The HTTP side of `sluice run`: the control API under `/api/v1`, the dashboard at `/`, health,
//! readiness and Prometheus metrics.
//!
//! `app` builds the router from state and is tested without a server (`oneshot`); `serve` binds
//! it. What `/api/v1` receives and answers is typed in [`model`], and its OpenAPI document is
//! generated from those types ([`ApiDoc`]). Every error is JSON `{"error": "..."}`; a 500 hides
//! its cause from the client and logs it, a 507 says which state file could not be written.

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
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub use v1::{ApiDoc, openapi_json};

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Modules, deployments and the running pipelines.
    pub control: Arc<ControlPlane>,
    /// Bearer token that routes which change anything require, if set.
    pub token: Option<Arc<str>>,
    /// Kafka client properties, to read dead letters; `None` where there is no Kafka.
    pub kafka: Option<Arc<KafkaConfig>>,
    stats: tokio::sync::watch::Receiver<Arc<model::Stats>>,
}

impl AppState {
    /// State for `control`'s pipelines; starts sampling their rates once a second, so it must
    /// be called inside a Tokio runtime.
    pub fn new(
        control: Arc<ControlPlane>,
        token: Option<String>,
        kafka: Option<KafkaConfig>,
    ) -> Self {
        let stats = stats::start_sampling(control.clone());
        let token = token.filter(|t| !t.is_empty()).map(Arc::from);
        AppState {
            control,
            token,
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
        .nest("/api/v1", v1::routes(&state))
        .fallback(ui::serve)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Requests that change anything (every method but GET, HEAD and OPTIONS) need the bearer
/// token when one is configured.
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    if [Method::GET, Method::HEAD, Method::OPTIONS].contains(request.method()) {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match given.and_then(|v| v.strip_prefix("Bearer ")) {
        // Constant-time, so that timing does not tell how much of a guess was right.
        Some(given) if bool::from(given.as_bytes().ct_eq(token.as_bytes())) => {
            next.run(request).await
        }
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the bearer token is not the one configured (api.token)",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this route changes the runtime: send `Authorization: Bearer <api.token>`",
        )
        .into_response(),
    }
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
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
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
        (self.status, axum::Json(model::ErrorBody { error: message })).into_response()
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
