//! `sluice demo`: one command brings up the embedded broker, the generators, both seed pipelines
//! and the dashboard; records flow through both within a minute; SIGTERM stops it cleanly.

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

#[test]
fn demo_runs_both_seed_pipelines_on_the_embedded_broker() {
    let mut demo = support::KillOnDrop(
        support::sluice()
            .args(["demo", "--listen", "127.0.0.1:0", "--rate", "100"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let (mut dashboard, mut broker) = (String::new(), String::new());
    while dashboard.is_empty() || broker.is_empty() {
        let line = lines
            .next()
            .expect("the demo ended before printing its addresses")
            .unwrap();
        if let Some(url) = line.trim().strip_prefix("Dashboard:") {
            dashboard = url
                .trim()
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string();
        }
        if let Some(rest) = line.trim().strip_prefix("Embedded broker:") {
            broker = rest.split_whitespace().next().unwrap().to_string();
        }
    }
    let mut pipelines = Value::Null;
    let flowing = support::poll(Duration::from_secs(60), || {
        pipelines = support::http::get_json(&format!("http://{dashboard}/api/v1/pipelines"));
        let out: Vec<u64> = pipelines["pipelines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["totals"]["out"].as_u64().unwrap())
            .collect();
        (out.len() == 2 && out.iter().all(|&n| n > 100)).then_some(())
    });
    assert!(
        flowing.is_some(),
        "no throughput within a minute: {pipelines}"
    );

    // What reached the outputs, as a user would look at it. The totals count records handed to
    // the producer, which may not be on the broker yet: wait until the topic has some.
    let read = |topic: &str| -> Vec<Value> {
        let out = support::sluice()
            .args([
                "peek",
                topic,
                "--bootstrap-servers",
                &broker,
                "-n",
                "5",
                "--format",
                "json",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", support::text(&out.stderr));
        support::text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["value"].clone())
            .collect()
    };
    let peek = |topic: &str| -> Vec<Value> {
        support::poll(Duration::from_secs(60), || {
            Some(read(topic)).filter(|values| !values.is_empty())
        })
        .unwrap_or_else(|| panic!("nothing reached {topic} within a minute"))
    };
    let unified = peek("unified_timestamps");
    assert!(
        unified
            .iter()
            .all(|v| v["timestamp"].is_number() && v.get("date").is_none()),
        "{unified:?}"
    );
    let enriched = peek("orders_enriched");
    assert!(
        enriched.iter().all(|v| v["email"] == "[EMAIL]"),
        "{enriched:?}"
    );
    assert!(
        enriched.iter().any(|v| v["customer_name"].is_string()),
        "{enriched:?}"
    );

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &demo.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = support::wait_for_exit(&mut demo, Duration::from_secs(60))
        .expect("the demo stops within a minute of SIGTERM");
    assert!(status.success(), "{status}");
}

#[test]
fn a_demo_on_a_busy_port_fails_first_and_starts_nothing() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let state = tempfile::tempdir().unwrap();
    let mut demo = support::KillOnDrop(
        support::sluice()
            .args([
                "demo",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--state-dir",
            ])
            .arg(state.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = support::wait_for_exit(&mut demo, Duration::from_secs(60))
        .expect("the demo did not exit on a busy port");
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(demo.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains(&format!("api.listen: cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
    // Nothing was started: the state directory is as it was given.
    let written: Vec<_> = std::fs::read_dir(state.path()).unwrap().collect();
    assert!(written.is_empty(), "{written:?}");
    drop(busy);
}
