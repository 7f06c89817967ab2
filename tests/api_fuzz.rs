//! The whole API fuzzed against its own OpenAPI document: schemathesis (installed by
//! `tests/fuzz/setup.sh`) generates requests from `/api/v1/openapi.json`, valid and not, for
//! every route of a `sluice run` on the real broker with a pipeline, a token and a stored
//! module, and checks that no answer is a 5xx and every status, content type and body is what
//! the document says. `SLUICE_FUZZ_SECONDS` sets how long (90 s by default); the seed of a
//! failing run is in its output, to replay it.

mod support;

use std::process::Command;
use std::time::Duration;
use support::kafka::{Sluice, create_topic, test_guest_pipeline, unique, write_config_with_api};
use support::repo;

const TOKEN: &str = "fuzz-token";

#[test]
fn no_request_makes_the_api_fail_or_answer_other_than_its_document_says() {
    let schemathesis = repo().join(".cache/fuzz-venv/bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "{} is missing: run `bash tests/fuzz/setup.sh` (make test does)",
        schemathesis.display()
    );
    let (input, output) = (unique("fuzz-in"), unique("fuzz-out"));
    create_topic(&input, 1);
    create_topic(&output, 1);
    let pipeline = unique("fuzz");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_with_api(
        dir.path(),
        &format!("token = \"{TOKEN}\""),
        &test_guest_pipeline(&pipeline, &input, &output),
    );
    let sluice = Sluice::start(&config);
    sluice.wait_until("ready", Duration::from_secs(60), || {
        sluice.http_get("/readyz").0 == 200
    });
    let seconds = std::env::var("SLUICE_FUZZ_SECONDS").unwrap_or_else(|_| "90".into());
    let out = Command::new(&schemathesis)
        .arg("--config-file")
        .arg(repo().join("tests/fuzz/schemathesis.toml"))
        .arg("run")
        .arg(format!(
            "http://{}/api/v1/openapi.json",
            sluice.api_address()
        ))
        // One worker: hypothesis's lambda descriptions call `ast.parse`, which CPython 3.11 can
        // crash on from several threads at once.
        .args(["--max-time", &seconds, "--workers", "1"])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        // The event stream never ends by design.
        .args(["--exclude-path", "/events"])
        .env("SLUICE_FUZZ_PIPELINE", &pipeline)
        // Its example database (.hypothesis) goes with the test's folder, not the checkout.
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    // Lines cut short: a generated body in a reproduction can be megabytes long.
    let report: String = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .lines()
    .map(|l| format!("{}\n", l.chars().take(400).collect::<String>()))
    .collect();
    // Its exit status is 1 for a failed check and for an error of its own alike; only the
    // first is the runtime's.
    assert!(
        !report.contains("\nFailures:"),
        "schemathesis found failures:\n{report}\nsluice log:\n{}",
        sluice.log()
    );
    if !out.status.success() {
        eprintln!("api fuzz: schemathesis had errors of its own, not failed checks:\n{report}");
    }
    // `12345 generated, 12345 passed`
    let passed: u64 = (report.lines())
        .find_map(|l| l.split(" generated, ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(passed > 100, "too few cases ran ({passed}):\n{report}");
    let summary: Vec<&str> = report.lines().filter(|l| l.contains("generated")).collect();
    eprintln!("api fuzz: {}", summary.join(" "));
    assert!(
        sluice.http_get("/healthz").0 == 200,
        "the runtime did not survive: {}",
        sluice.log()
    );
    sluice.signal("TERM");
}
