//! The control API against `sluice run` on a real broker: hot swaps while records stream, pause
//! and resume, and dead letters as the dashboard reads them.

mod support;

use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;
use support::kafka::{
    Sluice, consume_values, count, create_topic, produce, test_guest_pipeline, unique,
    wait_for_count, write_config,
};

/// `bytes` with a custom section appended: the same behaviour, different bytes, so a new
/// version in the module store.
fn variant(bytes: &[u8], n: u32) -> Vec<u8> {
    let name = b"sluice-test-variant";
    let payload = n.to_le_bytes();
    let size = 1 + name.len() + payload.len();
    assert!(size < 128 && name.len() < 128, "one-byte LEB128 sizes");
    let mut out = bytes.to_vec();
    out.extend([0, size as u8, name.len() as u8]);
    out.extend(name);
    out.extend(payload);
    out
}

fn wait_ready(sluice: &Sluice) {
    sluice.wait_until("/readyz answers 200", Duration::from_secs(90), || {
        sluice.http_get("/readyz").0 == 200
    });
}

fn json_of(answer: (u16, String), expected: u16) -> Value {
    assert_eq!(answer.0, expected, "{}", answer.1);
    serde_json::from_str(&answer.1).unwrap()
}

fn upload(sluice: &Sluice, name: &str, bytes: &[u8]) -> Value {
    json_of(
        sluice.http("POST", &format!("/api/v1/modules?name={name}"), bytes),
        201,
    )
}

/// Waits until `topic` holds `n` records; fails with the runtime's log otherwise.
fn expect_count(topic: &str, n: usize, sluice: &Sluice) {
    let held = wait_for_count(topic, n, Duration::from_secs(180));
    assert!(
        held >= n,
        "{topic} holds {held} of {n} records:\n{}",
        sluice.log()
    );
}

#[test]
fn ten_hot_swaps_while_200k_records_stream_lose_and_repeat_nothing() {
    hot_swaps_while_records_stream("at-least-once");
}

#[test]
fn ten_hot_swaps_under_exactly_once_land_on_transaction_boundaries_and_repeat_nothing() {
    hot_swaps_while_records_stream("exactly-once");
}

/// Ten deploys while 200k records stream through a pipeline with `guarantee`: every id comes
/// out once (read_committed, kcat's default).
fn hot_swaps_while_records_stream(guarantee: &str) {
    const RECORDS: usize = 200_000;
    const CHUNKS: usize = 20;
    let (input, output) = (unique("swap-in"), unique("swap-out"));
    create_topic(&input, 3);
    create_topic(&output, 3);
    // Its own consumer group: the two variants run at once.
    let name = format!("swap-{guarantee}");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[[pipeline]]\nname = \"{name}\"\ninputs = [\"{input}\"]\noutputs = [\"{output}\"]\nbatch_size = 500\n\
             guarantee = \"{guarantee}\"\n\n\
             [[pipeline.transform]]\nmodule = {:?}\n",
            support::wasm("test_guest")
        ),
    );
    let sluice = Sluice::start(&config);
    wait_ready(&sluice);
    let guest = std::fs::read(support::wasm("test_guest")).unwrap();
    for n in 1..=10 {
        assert_eq!(
            upload(&sluice, "swapper", &variant(&guest, n))["version"],
            n
        );
    }

    // The records go in 20 chunks. Right after every second chunk is produced, while the
    // pipeline is still working through it, the next version is deployed; the chunk after
    // the deploy runs on the new version.
    for chunk in 0..CHUNKS {
        let values: Vec<String> = (chunk * RECORDS / CHUNKS..(chunk + 1) * RECORDS / CHUNKS)
            .map(|id| format!("{{\"id\":{id}}}"))
            .collect();
        produce(&input, &values);
        if chunk % 2 == 1 {
            continue;
        }
        let version = chunk / 2 + 1;
        let body = json!({ "module": "swapper", "version": version }).to_string();
        let pipeline = json_of(
            sluice.http(
                "PUT",
                &format!("/api/v1/pipelines/{name}/transforms/0"),
                body.as_bytes(),
            ),
            200,
        );
        assert_eq!(pipeline["slots"][0]["version"], version);
    }
    // Exactly-once writes transaction markers, which take offsets too: count what reads back.
    let mut outputs = Vec::new();
    sluice.wait_until("every record out", Duration::from_secs(180), || {
        outputs = consume_values(&output);
        outputs.len() >= RECORDS
    });
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    for value in &outputs {
        let id = serde_json::from_str::<Value>(value).unwrap()["id"]
            .as_u64()
            .unwrap();
        if !seen.insert(id) {
            duplicates += 1;
        }
    }
    let missing = (0..RECORDS as u64).filter(|id| !seen.contains(id)).count();
    assert_eq!(
        (missing, duplicates),
        (0, 0),
        "records lost or written twice across hot swaps"
    );
    let pipeline = json_of(sluice.http_get(&format!("/api/v1/pipelines/{name}")), 200);
    assert_eq!(pipeline["slots"][0]["module"], "swapper");
    assert_eq!(pipeline["slots"][0]["version"], 10);
    let swaps = &pipeline["swaps"];
    assert!(swaps["count"].as_u64().unwrap() >= 10, "{pipeline}");
    eprintln!(
        "hot swap, {guarantee}: 10 deploys over {RECORDS} records, {} partition switches, longest pause {} ms",
        swaps["count"], swaps["max_pause_ms"]
    );
    // The consumer was never restarted: one assignment, at start.
    assert_eq!(
        sluice.log().matches("partition assigned").count(),
        3,
        "{}",
        sluice.log()
    );
}

#[test]
fn pause_holds_records_back_resume_lets_them_through_and_dead_letters_are_shown() {
    let (input, output, dead) = (unique("pause-in"), unique("pause-out"), unique("pause-dlq"));
    // A second pipeline reads the same input, never paused: once it has copied everything, the
    // paused one has had every chance to write.
    let unpaused_output = unique("unpaused-out");
    create_topic(&input, 1);
    create_topic(&output, 1);
    create_topic(&dead, 1);
    create_topic(&unpaused_output, 1);
    let guest = support::wasm("test_guest");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[[pipeline]]\nname = \"held\"\ninputs = [\"{input}\"]\noutputs = [\"{output}\"]\ndead_letter = \"{dead}\"\n\n\
             [[pipeline.transform]]\nmodule = {guest:?}\nconfig = {{ fail_on = \"poison\" }}\n\n\
             [[pipeline]]\nname = \"unpaused\"\ninputs = [\"{input}\"]\noutputs = [\"{unpaused_output}\"]\n\n\
             [[pipeline.transform]]\nmodule = {guest:?}\n",
        ),
    );
    let sluice = Sluice::start(&config);
    wait_ready(&sluice);
    let paused = json_of(
        sluice.http("POST", "/api/v1/pipelines/held/pause", b""),
        200,
    );
    assert_eq!(paused["status"], "paused");
    // The pause is applied by the poll loop, which logs it.
    sluice.wait_until(
        "the poll loop applied the pause",
        Duration::from_secs(30),
        || {
            sluice
                .log()
                .lines()
                .any(|l| l.contains("paused") && l.contains("pipeline=held"))
        },
    );
    let records: Vec<String> = (0..100)
        .map(|i| {
            if i == 7 {
                "poison".to_string()
            } else {
                format!("record {i}")
            }
        })
        .collect();
    produce(&input, &records);
    expect_count(&unpaused_output, 100, &sluice);
    assert_eq!(count(&output), 0, "a paused pipeline wrote records");

    let resumed = json_of(
        sluice.http("POST", "/api/v1/pipelines/held/resume", b""),
        200,
    );
    assert_eq!(resumed["status"], "running");
    expect_count(&output, 99, &sluice);
    expect_count(&dead, 1, &sluice);
    let letters = json_of(
        sluice.http_get("/api/v1/pipelines/held/dead-letters?limit=5"),
        200,
    );
    assert_eq!(letters["topic"], dead.as_str());
    let record = &letters["records"][0];
    assert_eq!(record["value"], "poison");
    assert_eq!(
        record["headers"]["sluice.error.message"],
        "rejected record at offset 7"
    );
    assert_eq!(record["headers"]["sluice.transform.module"], "test_guest");
    assert_eq!(record["headers"]["sluice.transform.version"], "1");
    assert_eq!(record["headers"]["sluice.source.offset"], "7");
}

#[test]
fn modules_and_deploy_commands_drive_a_running_runtime() {
    let (input, output) = (unique("cli-in"), unique("cli-out"));
    create_topic(&input, 1);
    create_topic(&output, 1);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &test_guest_pipeline("unify", &input, &output));
    let sluice = Sluice::start(&config);
    wait_ready(&sluice);
    let api = format!("http://{}", sluice.api_address());
    let cli = |args: &[&str]| {
        let out = support::sluice()
            .args(args)
            .args(["--api", &api])
            .output()
            .unwrap();
        (
            out.status.code(),
            support::text(&out.stdout),
            support::text(&out.stderr),
        )
    };
    let tz = support::wasm("tz_normaliser");
    let (code, stdout, stderr) = cli(&["modules", "upload", tz.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with("tz_normaliser version 1 (sha256 "),
        "{stdout}"
    );
    let (_, stdout, _) = cli(&["modules", "list"]);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("tz_normaliser") && l.contains(" 1 ")),
        "{stdout}"
    );

    let (code, stdout, stderr) = cli(&["deploy", "unify", "tz_normaliser"]);
    assert_eq!(
        (code, stdout.as_str()),
        (Some(0), "unify: [0] tz_normaliser@1\n"),
        "{stderr}"
    );
    produce(
        &input,
        &[r#"{"date": "2024-02-05 10:01:52.884548 -0500", "message": "0"}"#.to_string()],
    );
    expect_count(&output, 1, &sluice);
    assert_eq!(
        consume_values(&output),
        [r#"{"timestamp":1707145312884.548,"message":"0"}"#]
    );

    let (code, _, stderr) = cli(&["deploy", "unify", "nope@1"]);
    assert_eq!(
        (code, stderr.as_str()),
        (
            Some(1),
            "error: no module is called `nope` (404 Not Found)\n"
        )
    );
    let (code, stdout, stderr) = cli(&["deploy", "unify", "--rollback"]);
    assert_eq!(
        (code, stdout.as_str()),
        (Some(0), "unify: [0] test_guest@1\n"),
        "{stderr}"
    );
}
