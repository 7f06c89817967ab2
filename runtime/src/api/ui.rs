//! The dashboard: the files of `web-ui/dist`, embedded at build time (see `build.rs`).

use axum::http::{StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// Served at `/` when the binary was built without the dashboard.
const NOT_BUILT: &str = "<!doctype html><title>Sluice</title><h1>Sluice</h1>\
<p>This binary was built without the dashboard. Build it with <code>make ui</code> (or <code>make build</code>) \
and rebuild <code>sluice</code>. The API is at <a href=\"api/v1/openapi.json\">/api/v1</a>.</p>";

/// Serves `/` and the dashboard's files; anything else is 404.
pub(super) async fn serve(uri: Uri) -> Response {
    match uri.path().trim_start_matches('/') {
        "" => asset("index.html"),
        path => asset(path),
    }
}

fn asset(path: &str) -> Response {
    match ASSETS.iter().find(|(name, _)| *name == path) {
        Some((name, bytes)) => (
            [
                (header::CONTENT_TYPE, content_type(name)),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
        None if path == "index.html" => Html(NOT_BUILT).into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}
