//! Who may use the API: the bearer tokens (changes, and reads with a read token), and what a
//! web page the user visits cannot make the browser do (changes from another site, requests
//! under a name the runtime does not answer to).

use super::{ApiError, AppState};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

/// Who may use the API, and by which names.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Bearer token that routes which change anything require, if set.
    pub token: Option<String>,
    /// Bearer token that reads of records and settings require (the write token works too),
    /// if set.
    pub read_token: Option<String>,
    /// Host names the API may be reached by, besides IP addresses and `localhost` (see
    /// `[api] allowed_hosts`).
    pub allowed_hosts: Vec<String>,
}

/// Whether `method` only reads.
fn reads_only(method: &Method) -> bool {
    [Method::GET, Method::HEAD, Method::OPTIONS].contains(method)
}

/// Refuses what a web page the user visits could make the browser send: any request naming a
/// host this runtime does not answer to (a page's own name pointed at this machine: DNS
/// rebinding), and a change from a page of another origin. Clients that are not browsers send
/// no `Origin` and are not concerned.
pub(super) async fn same_site(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let host = (request.headers().get(header::HOST)).and_then(|v| v.to_str().ok());
    if let Some(host) = host
        && !state.answers_to(host)
    {
        return ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this runtime is not `{host}`: reach it by an IP address, localhost, or a name in [api] allowed_hosts"
            ),
        )
        .into_response();
    }
    if !reads_only(request.method())
        && let Some(origin) = request.headers().get(header::ORIGIN)
    {
        let origin = origin.to_str().unwrap_or_default();
        let authority = origin.split_once("://").map(|(_, rest)| rest);
        let same = authority
            .zip(host)
            .is_some_and(|(a, h)| a.eq_ignore_ascii_case(h));
        if !same {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "a change sent by another site is refused: the request comes from `{origin}`, not from this dashboard"
                ),
            )
            .into_response();
        }
    }
    next.run(request).await
}

impl AppState {
    /// Whether `host` (a `Host` header: a name or address, and maybe a port) names this runtime.
    pub(super) fn answers_to(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            // [v6]:port
            Some(rest) => rest.split(']').next().unwrap_or_default(),
            None => match host.rsplit_once(':') {
                Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
                _ => host,
            },
        };
        name.parse::<std::net::IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self.allowed_hosts.contains(&name.to_ascii_lowercase())
    }
}

/// Requests that change anything (every method but GET, HEAD and OPTIONS) need the bearer
/// token when one is configured. With a read token too, reads under `/api/v1` that show
/// records or settings (all but `/info` and `/openapi.json`) need either token; the event
/// stream, which a browser's `EventSource` opens without headers, also takes it as
/// `?access_token=` (RFC 6750).
pub(super) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let reading = reads_only(request.method());
    let path = request.uri().path();
    let accepted: Vec<&str> = match (reading, &state.token, &state.read_token) {
        (false, Some(token), _) => vec![token],
        (true, Some(token), Some(read))
            if path.starts_with("/api/v1/")
                && !["/api/v1/info", "/api/v1/openapi.json"].contains(&path) =>
        {
            vec![read, token]
        }
        _ => return next.run(request).await,
    };
    let header = (request.headers().get(header::AUTHORIZATION)).and_then(|v| v.to_str().ok());
    // The scheme's name is case-insensitive (RFC 9110).
    let bearer = header
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_string());
    let in_query = (path == "/api/v1/events")
        .then(|| request.uri().query())
        .flatten()
        .and_then(|q| url_query_value(q, "access_token"));
    // Constant-time, so that timing does not tell how much of a guess was right.
    let matches =
        |given: &str| (accepted.iter()).any(|t| bool::from(given.as_bytes().ct_eq(t.as_bytes())));
    match bearer.or(in_query) {
        Some(given) if matches(&given) => next.run(request).await,
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            if reading {
                "the bearer token is neither api.read_token nor api.token"
            } else {
                "the bearer token is not the one configured (api.token)"
            },
        )
        .into_response(),
        None if reading => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this route shows records and settings: send `Authorization: Bearer <api.read_token or api.token>`",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this route changes the runtime: send `Authorization: Bearer <api.token>`",
        )
        .into_response(),
    }
}

/// The value of `key` in a query string, percent-decoded.
fn url_query_value(query: &str, key: &str) -> Option<String> {
    (query.split('&'))
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
}
