//! The whole API fuzzed against its own OpenAPI document: schemathesis (installed by
//! `tests/fuzz/setup.sh`) generates requests from `/api/v1/openapi.json`, valid and not, for
//! every route of a `sluice run` on the real broker with a pipeline, a token and a stored
//! module, and checks that no answer is a 5xx and every status, content type and body is what
//! the document says. `SLUICE_FUZZ_SECONDS` sets how long (90 s by default); the seed of a
//! failing run is in its output, to replay it.

mod support;

use std::process::Command;
use std::time::Duration;
use support::kafka::{Sluice, create_topic, unique, write_config};
use support::{repo, wasm};

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
    let config = write_config(
        dir.path(),
        &format!(
            "[[pipeline]]\nname = \"{pipeline}\"\ninputs = [\"{input}\"]\noutputs = [\"{output}\"]\n\n\
             [[pipeline.transform]]\nmodule = {:?}\n",
            wasm("test_guest")
        ),
    );
    let with_token = std::fs::read_to_string(&config).unwrap().replacen(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\""),
        1,
    );
    std::fs::write(&config, with_token).unwrap();
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
        .args(["--max-time", &seconds, "--workers", "2"])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        // The event stream never ends by design.
        .args(["--exclude-path", "/events"])
        .env("SLUICE_FUZZ_PIPELINE", &pipeline)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}\nsluice log:\n{}",
        sluice.log()
    );
    let summary: Vec<&str> = report.lines().filter(|l| l.contains("generated")).collect();
    eprintln!("api fuzz: {}", summary.join(" "));
    assert!(
        sluice.http_get("/healthz").0 == 200,
        "the runtime did not survive: {}",
        sluice.log()
    );
    sluice.signal("TERM");
}
