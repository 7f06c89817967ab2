//! The tests' one HTTP client, for the runtime's API and the dashboard: `ureq`, which `sluice`
//! itself uses for `sluice modules` and `sluice deploy`, so the tests add no client of their own.

use std::sync::OnceLock;
use std::time::Duration;

/// An agent that returns error statuses as answers (tests assert on them) and gives up on a
/// request after a minute.
fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into()
    })
}

/// Sends `method url` with `body`, as a module to upload when it starts as one (`\0asm`), as
/// JSON otherwise: the status code and the body.
pub fn send(method: &str, url: &str, body: &[u8]) -> (u16, String) {
    let content_type = if body.starts_with(b"\0asm") {
        "application/wasm"
    } else {
        "application/json"
    };
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", content_type)
        .body(body.to_vec())
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let mut response = agent()
        .run(request)
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let body = response
        .body_mut()
        .read_to_string()
        .unwrap_or_else(|e| panic!("{method} {url}: cannot read the answer: {e}"));
    (response.status().as_u16(), body)
}

/// GETs `url`: the status code and the body.
pub fn get(url: &str) -> (u16, String) {
    send("GET", url, b"")
}

/// GETs `url`, which must answer 200 with JSON: the JSON.
pub fn get_json(url: &str) -> serde_json::Value {
    let (status, body) = get(url);
    assert_eq!(status, 200, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"))
}
