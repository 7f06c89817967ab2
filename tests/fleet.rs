//! A fleet of `sluice run` members on a real broker: partitions shared through the consumer
//! group, one control plane kept in Kafka topics, and the dashboard's Fleet view in headless
//! Chromium (`tests/browser/fleet.mjs`).

mod support;

use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;
use support::kafka::{
    Sluice, consume_values, create_topic, produce, produce_keyed, unique, write_config,
};
use support::wasm;

/// `bytes` with a custom section appended: the same behaviour, other bytes.
fn variant(bytes: &[u8], n: u32) -> Vec<u8> {
    let name = b"sluice-test-variant";
    let payload = n.to_le_bytes();
    let size = 1 + name.len() + payload.len();
    let mut out = bytes.to_vec();
    out.extend([0, size as u8, name.len() as u8]);
    out.extend(name);
    out.extend(payload);
    out
}

fn json_of(answer: (u16, String), expected: u16) -> Value {
    assert_eq!(answer.0, expected, "{}", answer.1);
    serde_json::from_str(&answer.1).unwrap()
}

/// What slot 0 of pipeline `fleet` runs on `member`: module and version.
fn slot(member: &Sluice) -> (String, u64) {
    let answer = member.http_get("/api/v1/pipelines/fleet");
    if answer.0 != 200 {
        return (String::new(), 0);
    }
    let pipeline: Value = serde_json::from_str(&answer.1).unwrap();
    let slot = &pipeline["slots"][0];
    (
        slot["module"].as_str().unwrap_or_default().to_string(),
        slot["version"].as_u64().unwrap_or_default(),
    )
}

/// A member: its own folder (so its own `state_dir`) holding the shared configuration.
fn member(config: &str) -> (tempfile::TempDir, Sluice) {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = write_config(dir.path(), config);
    let sluice = Sluice::start(&path);
    (dir, sluice)
}

fn ids(values: &[String]) -> HashSet<u64> {
    (values.iter())
        .filter_map(|v| serde_json::from_str::<Value>(v).ok()?["id"].as_u64())
        .collect()
}

fn produce_ids(topic: &str, range: std::ops::Range<u64>) {
    let values: Vec<String> = range.map(|id| format!(r#"{{"id":{id}}}"#)).collect();
    produce(topic, &values);
}

/// Each member's id, as its `GET /fleet` says.
fn ids_of(members: &[(tempfile::TempDir, Sluice)]) -> Vec<String> {
    (members.iter())
        .map(|(_, m)| {
            let fleet = json_of(m.http_get("/api/v1/fleet"), 200);
            fleet["member"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Whether `member`'s `GET /fleet` shows `live` alive, holding the 12 partitions between them
/// and running swapper@1, and `missing` as missing.
fn fleet_view(member: &Sluice, live: &[String], missing: &[String]) -> bool {
    let fleet = json_of(member.http_get("/api/v1/fleet"), 200);
    let members = fleet["members"].as_array().unwrap();
    let find = |id: &String| members.iter().find(|m| m["id"] == json!(id));
    let mut partitions = 0;
    for id in live {
        let Some(m) = find(id) else { return false };
        let pipeline = &m["pipelines"][0];
        partitions += pipeline["partitions"].as_array().unwrap().len();
        if m["alive"] != json!(true)
            || pipeline["slots"][0] != json!({"module": "swapper", "version": 1})
        {
            return false;
        }
    }
    let gone = missing
        .iter()
        .all(|id| find(id).is_some_and(|m| m["alive"] == json!(false)));
    partitions == 12 && gone
}

/// Runs `tests/browser/fleet.mjs` against `member`'s page (see there).
fn browser_check(member: &Sluice, live: &[String], missing: &[String]) {
    let mut command = std::process::Command::new("bash");
    command
        .arg(support::repo().join("tests/browser/run.sh"))
        .arg("fleet.mjs")
        .args(["--url", &format!("http://{}/", member.api_address())])
        .args([
            "--pipeline",
            "fleet",
            "--running",
            "swapper@1",
            "--partitions",
            "12",
        ])
        .args(["--live", &live.join(",")])
        .arg("--screenshots")
        .arg(support::repo().join("target/screenshots"));
    if !missing.is_empty() {
        command.args(["--missing", &missing.join(",")]);
    }
    let mut browser = support::KillOnDrop(command.spawn().expect("bash runs tests/browser/run.sh"));
    let status = support::wait_for_exit(&mut browser, Duration::from_secs(120));
    assert!(
        status.is_some_and(|s| s.success()),
        "the Fleet view's browser test failed ({status:?}); log of the member serving it:\n{}",
        member.log()
    );
}

#[test]
fn three_members_share_partitions_and_one_control_plane_kept_in_kafka() {
    let (input, output, fleet) = (unique("fleet-in"), unique("fleet-out"), unique("fleet"));
    create_topic(&input, 12);
    create_topic(&output, 12);
    let config = format!(
        r#""session.timeout.ms" = 6000

[fleet]
name = "{fleet}"

[[pipeline]]
name = "fleet"
group_id = "{}"
inputs = ["{input}"]
outputs = ["{output}"]

[[pipeline.transform]]
module = "{}"
"#,
        unique("fleet-group"),
        wasm("test_guest").display()
    );
    let mut members: Vec<(tempfile::TempDir, Sluice)> = (0..3).map(|_| member(&config)).collect();
    for (_, m) in &members {
        m.wait_until("ready", Duration::from_secs(90), || {
            m.http_get("/readyz").0 == 200
        });
    }
    produce_ids(&input, 0..20_000);

    // Upload through A, deploy through B: every member runs it within 10 s.
    let guest = std::fs::read(wasm("test_guest")).unwrap();
    let uploaded = json_of(
        members[0]
            .1
            .http("POST", "/api/v1/modules?name=swapper", &variant(&guest, 1)),
        201,
    );
    assert_eq!(uploaded["version"], 1);
    let body = json!({ "module": "swapper", "version": 1 }).to_string();
    let deployed = std::time::Instant::now();
    json_of(
        (members[1].1).http(
            "PUT",
            "/api/v1/pipelines/fleet/transforms/0",
            body.as_bytes(),
        ),
        200,
    );
    for (_, m) in &members {
        m.wait_until(
            "the deploy on every member",
            Duration::from_secs(10),
            || slot(m) == ("swapper".to_string(), 1),
        );
    }
    eprintln!(
        "the deploy ran on every member {} ms after it was asked for",
        deployed.elapsed().as_millis()
    );
    // A member's module list is the fleet's.
    let modules = json_of(members[2].1.http_get("/api/v1/modules"), 200);
    assert!(modules.to_string().contains("swapper"), "{modules}");

    // Each member's heartbeat says what it runs and which partitions it has; the Fleet view
    // shows them all, through any member's page.
    let member_ids = ids_of(&members);
    let a = &members[0].1;
    a.wait_until("every member's heartbeat", Duration::from_secs(20), || {
        fleet_view(a, &member_ids, &[])
    });
    browser_check(a, &member_ids, &[]);

    // Tampered bytes in the modules topic are refused by every member.
    let fake_sha = "0".repeat(64);
    produce_keyed(
        &format!("_sluice.{fleet}.modules"),
        &[
            (
                &format!("chunk/{fake_sha}/0/1"),
                Some("not the bytes of that hash"),
            ),
            (
                &format!("module/tampered/{fake_sha}"),
                Some(r#"{"uploaded_at":"2026-12-05T00:00:00Z","exports":[],"chunks":1}"#),
            ),
        ],
    );
    for (_, m) in &members {
        m.wait_until(
            "the tampered module refused",
            Duration::from_secs(10),
            || m.log().contains("its bytes do not match their sha256"),
        );
        let modules = json_of(m.http_get("/api/v1/modules"), 200);
        assert!(!modules.to_string().contains("tampered"), "{modules}");
    }

    // C dies: A and B take its partitions, and every id arrives.
    produce_ids(&input, 20_000..40_000);
    members[2].1.signal("KILL");
    members[2].1.wait(Duration::from_secs(10));
    produce_ids(&input, 40_000..60_000);
    let a = &members[0].1;
    a.wait_until("every id out", Duration::from_secs(120), || {
        ids(&consume_values(&output)).len() == 60_000
    });
    a.wait_until("C shown missing", Duration::from_secs(30), || {
        fleet_view(a, &member_ids[..2], &member_ids[2..])
    });
    browser_check(a, &member_ids[..2], &member_ids[2..]);

    // Every member stopped, then started with an empty state_dir: they run what was deployed.
    for (_, m) in members.iter_mut().take(2) {
        m.signal("TERM");
        assert!(
            m.wait(Duration::from_secs(60)).is_some_and(|s| s.success()),
            "{}",
            m.log()
        );
    }
    drop(members);
    let members: Vec<(tempfile::TempDir, Sluice)> = (0..3).map(|_| member(&config)).collect();
    for (_, m) in &members {
        m.wait_until(
            "the deployed module after a restart from nothing",
            Duration::from_secs(90),
            || slot(m) == ("swapper".to_string(), 1),
        );
    }
    produce_ids(&input, 60_000..70_000);
    members[0].1.wait_until(
        "every id out after the restart",
        Duration::from_secs(120),
        || ids(&consume_values(&output)).len() == 70_000,
    );
    // A and B said they left; C, killed, is listed as missing beside the new members.
    let new_ids = ids_of(&members);
    let a = &members[0].1;
    a.wait_until(
        "the new members live and C missing",
        Duration::from_secs(20),
        || fleet_view(a, &new_ids, &member_ids[2..]),
    );
    let listed = json_of(a.http_get("/api/v1/fleet"), 200).to_string();
    for left in &member_ids[..2] {
        assert!(
            !listed.contains(left.as_str()),
            "{left} left but is listed: {listed}"
        );
    }

    // A pipeline created through A runs on every member, sharing its partitions; deleted through
    // C, it stops on every member.
    let (input2, output2, created) = (unique("fleet-in2"), unique("fleet-out2"), unique("created"));
    create_topic(&input2, 6);
    create_topic(&output2, 6);
    let definition = json!({
        "name": created, "inputs": [input2], "outputs": [output2],
        "transform": [{"module": "swapper@1"}],
    });
    let path = format!("/api/v1/pipelines/{created}");
    let answer = members[0]
        .1
        .http("PUT", &path, definition.to_string().as_bytes());
    assert_eq!(json_of(answer, 201)["last_change"]["what"], "created");
    for (_, m) in &members {
        m.wait_until(
            "the created pipeline running on every member",
            Duration::from_secs(60),
            || {
                let (status, body) = m.http_get(&path);
                status == 200 && body.contains(r#""status":"running""#)
            },
        );
    }
    produce_ids(&input2, 0..5_000);
    a.wait_until(
        "every id through the created pipeline",
        Duration::from_secs(60),
        || ids(&consume_values(&output2)).len() == 5_000,
    );
    assert_eq!(members[2].1.http("DELETE", &path, b"").0, 204);
    for (_, m) in &members {
        m.wait_until(
            "the deleted pipeline gone from every member",
            Duration::from_secs(30),
            || m.http_get(&path).0 == 404,
        );
    }

    for (_, m) in &members {
        m.signal("TERM");
    }
}
