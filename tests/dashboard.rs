//! The web dashboard end to end: `sluice run` on the real broker (`tests/with-kafka.sh`) with a
//! pipeline whose only slot starts as the pass-through test guest, records streaming in all the
//! while, and `tests/browser/dashboard.mjs` driving Debian's headless Chromium through the page:
//! upload the tz normaliser (its TypeScript port, which gives the Rust one's outputs: a module in
//! any language goes through the page alike), deploy it, watch the chart move, upload a broken file and see the
//! API's error, try the module on sample lines, read the dead letters, roll back, pause and
//! resume; create a pipeline with the form, edit its chain and delete it; before any of that, a
//! change without the API token is refused and the page says why.
//! Screenshots land in `target/screenshots/`.
//!
//! Needs `bash tests/setup.sh` (chromium), Node.js and npm (`bash web-ui/build.sh` installs them),
//! and the dashboard built into the binary (`make ui` before building `sluice`).

mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::kafka::{Sluice, create_topic, test_guest_pipeline, unique, write_config_with_api};
use support::{data, polyglot, repo, wasm};

/// How long the browser run may take before it is stopped and the test fails.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(300);
/// The API token of the test's `sluice run`.
const TOKEN: &str = "dashboard-test-token";

/// Produces seed-000 lines and, now and then, a line that is not JSON (which the tz normaliser
/// rejects, so dead letters appear once it is deployed), until `stop` is set. One kcat process
/// for the whole run, fed a few dozen lines every 250 ms.
fn keep_producing(topic: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    use std::io::Write;
    let seed: Vec<String> = std::fs::read_to_string(data("seed-000.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let mut kcat = Command::new("kcat")
        .args(["-P", "-b", &support::kafka::bootstrap(), "-t", &topic])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kcat is installed by tests/setup.sh");
    std::thread::spawn(move || {
        let mut stdin = kcat.stdin.take().unwrap();
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) {
            let mut batch: String = (0..60)
                .map(|i| format!("{}\n", seed[(sent + i) % seed.len()]))
                .collect();
            batch.push_str(&format!("not json {sent}\n"));
            stdin
                .write_all(batch.as_bytes())
                .and_then(|()| stdin.flush())
                .expect("kcat stopped taking records");
            sent += 61;
            std::thread::sleep(Duration::from_millis(250));
        }
        drop(stdin);
        assert!(
            kcat.wait().unwrap().success(),
            "kcat could not produce to {topic}"
        );
        sent
    })
}

#[test]
fn dashboard_uploads_deploys_and_shows_live_throughput_in_chromium() {
    let (input, output, dlq) = (unique("dash-in"), unique("dash-out"), unique("dash-dlq"));
    let form_output = unique("dash-form-out");
    create_topic(&input, 3);
    create_topic(&output, 3);
    create_topic(&dlq, 1);
    create_topic(&form_output, 1);
    let name = unique("dashboard");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_with_api(
        dir.path(),
        // Changes need a token: the page is tested refusing one without it, then sending it.
        &format!("token = \"{TOKEN}\""),
        &format!(
            r#"
[[pipeline]]
name = "{name}"
inputs = ["{input}"]
outputs = ["{output}"]
dead_letter = "{dlq}"
start = "earliest"
linger_ms = 20

[[pipeline.transform]]
module = "{}"
config = {{}}
"#,
            wasm("test_guest").display()
        ),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let producer = keep_producing(input.clone(), stop.clone());
    let sluice = Sluice::start(&config);
    let address = sluice.api_address();

    let (status, page) = sluice.http_get("/");
    assert!(
        status == 200 && page.contains("app.js"),
        "GET / does not serve the dashboard ({status}): build it with `make ui` (bash web-ui/build.sh) before building sluice\n{page}"
    );

    let screenshots = repo().join("target/screenshots");
    let mut browser = support::KillOnDrop(
        Command::new("bash")
            .arg(repo().join("tests/browser/run.sh"))
            .args([
                "--url",
                &format!("http://{address}/"),
                "--pipeline",
                &name,
                "--token",
                TOKEN,
                "--input",
                &input,
                "--form-output",
                &form_output,
            ])
            .arg("--wasm")
            .arg(polyglot("tz_normaliser_typescript"))
            .arg("--samples")
            .arg(data("seed-000.jsonl"))
            .arg("--expected")
            .arg(data("seed-000.expected.jsonl"))
            .arg("--screenshots")
            .arg(&screenshots)
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("bash runs tests/browser/run.sh"),
    );
    // Past the deadline, the browser run is killed when `browser` is dropped.
    let result = support::wait_for_exit(&mut browser, BROWSER_TIMEOUT);
    drop(browser);

    stop.store(true, Ordering::Relaxed);
    let sent = producer.join().unwrap();
    let log = sluice.log();
    match result {
        None => panic!(
            "the browser test took longer than {BROWSER_TIMEOUT:?}; screenshots in {}; sluice log:\n{log}",
            screenshots.display()
        ),
        Some(status) => assert!(
            status.success(),
            "the browser test failed ({status}); screenshots in {}; {sent} records produced; sluice log:\n{log}",
            screenshots.display()
        ),
    }
}

/// With `[api] read_token`, the page shows nothing until given a token, lists pipelines and
/// follows the live feed with the read token, and cannot change anything with it
/// (`tests/browser/read_token.mjs`).
#[test]
fn a_read_token_lets_the_page_watch_but_not_change() {
    let (input, output) = (unique("read-in"), unique("read-out"));
    create_topic(&input, 1);
    create_topic(&output, 1);
    let name = unique("watched");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_with_api(
        dir.path(),
        &format!("token = \"{TOKEN}\"\nread_token = \"watch-only\""),
        &test_guest_pipeline(&name, &input, &output),
    );
    let sluice = Sluice::start(&config);
    let address = sluice.api_address();
    let mut browser = support::KillOnDrop(
        Command::new("bash")
            .arg(repo().join("tests/browser/run.sh"))
            .arg("read_token.mjs")
            .args(["--url", &format!("http://{address}/"), "--pipeline", &name])
            .args(["--read-token", "watch-only"])
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("bash runs tests/browser/run.sh"),
    );
    let result = support::wait_for_exit(&mut browser, BROWSER_TIMEOUT);
    drop(browser);
    match result {
        None => panic!("the browser test took longer than {BROWSER_TIMEOUT:?}"),
        Some(status) => assert!(
            status.success(),
            "the read-token browser test failed ({status}); sluice log:\n{}",
            sluice.log()
        ),
    }
}
