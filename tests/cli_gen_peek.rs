//! `sluice gen` and `sluice peek` against a real Apache Kafka broker (`tests/with-kafka.sh`),
//! with kcat on the other side; and `sluice transform new`, built and run for real.

mod support;

use chrono::Offset;
use std::collections::HashSet;
use std::process::Output;
use std::time::{Duration, Instant};
use support::kafka::{bootstrap, consume, count, create_topic, produce, topics, unique};
use support::{sluice, text};

/// Runs `sluice ARGS...` against the test broker; its status and output.
fn sluice_with_kafka(args: &[&str]) -> Output {
    sluice()
        .args(args)
        .env("SLUICE_BOOTSTRAP_SERVERS", bootstrap())
        .output()
        .unwrap()
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// `sluice peek ARGS...`: its standard output.
fn peek(args: &[&str]) -> String {
    let mut all = vec!["peek"];
    all.extend_from_slice(args);
    let out = sluice_with_kafka(&all);
    assert_success(&out);
    text(&out.stdout)
}

/// `sluice peek --format json ARGS...`: the records, parsed.
fn peek_json(args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    peek(&all)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn offsets(records: &[serde_json::Value]) -> Vec<i64> {
    records
        .iter()
        .map(|r| r["offset"].as_i64().unwrap())
        .collect()
}

/// A one-partition topic holding `{"id": i, "name": {"first": "n<i>"}}` for `ids`.
fn topic_with_ids(ids: std::ops::Range<usize>) -> String {
    let topic = unique("peek");
    create_topic(&topic, 1);
    produce(
        &topic,
        &ids.map(|i| format!(r#"{{"id": {i}, "name": {{"first": "n{i}"}}}}"#))
            .collect::<Vec<_>>(),
    );
    topic
}

#[test]
fn gen_count_writes_seed_000_logs_to_both_city_topics() {
    let (ny, paris) = (unique("timezone1"), unique("timezone2"));
    let topics_flag = format!("{ny},{paris}");
    let out = sluice_with_kafka(&[
        "gen",
        "--count",
        "200",
        "--topics",
        &topics_flag,
        "--seed",
        "1",
        "--late-fraction",
        "0.2",
    ]);
    assert_success(&out);
    assert!(
        text(&out.stderr).contains("sent 200 records"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(count(&ny) + count(&paris), 200);

    let mut messages = HashSet::new();
    for (topic, zone) in [
        (&ny, chrono_tz::America::New_York),
        (&paris, chrono_tz::Europe::Paris),
    ] {
        let records = consume(topic);
        assert!(
            records.len() > 50,
            "both cities get logs: {} in {topic}",
            records.len()
        );
        for record in records {
            let value: serde_json::Value = serde_json::from_str(&record.value).unwrap();
            assert_eq!(value.as_object().unwrap().len(), 2, "{}", record.value);
            let date = value["date"].as_str().unwrap();
            let parsed =
                chrono::DateTime::parse_from_str(date, "%Y-%m-%d %H:%M:%S%.6f %z").unwrap();
            // The offset is the city's at that instant (daylight saving time included).
            assert_eq!(
                parsed.with_timezone(&zone).offset().fix(),
                *parsed.offset(),
                "{date} in {topic}"
            );
            assert!(messages.insert(value["message"].as_str().unwrap().to_string()));
        }
        // Gen creates missing topics with 3 partitions, and peek reads them all.
        assert_eq!(peek_json(&[topic, "-n", "1000"]).len(), count(topic));
    }
    assert_eq!(messages, (0..200).map(|i| i.to_string()).collect());
}

#[test]
fn gen_orders_keys_customers_and_references_them_from_orders() {
    let (customers, orders) = (unique("customers"), unique("orders"));
    let topics_flag = format!("{customers},{orders}");
    assert_success(&sluice_with_kafka(&[
        "gen",
        "--scenario",
        "orders",
        "--count",
        "100",
        "--topics",
        &topics_flag,
    ]));
    let known: HashSet<String> = consume(&customers)
        .into_iter()
        .map(|c| {
            let value: serde_json::Value = serde_json::from_str(&c.value).unwrap();
            assert_eq!(
                c.key.as_deref(),
                value["id"].as_str(),
                "customers are keyed by id: {}",
                c.value
            );
            c.key.unwrap()
        })
        .collect();
    assert!(
        known.is_superset(&["2", "5", "7"].map(String::from).into()),
        "seed 004's customers: {known:?}"
    );
    let orders = consume(&orders);
    assert!(orders.len() >= 80, "mostly orders: {}", orders.len());
    for order in orders {
        let value: serde_json::Value = serde_json::from_str(&order.value).unwrap();
        assert!(
            known.contains(value["customer_id"].as_str().unwrap()),
            "{}",
            order.value
        );
    }
}

#[test]
fn gen_paces_rates_and_bursts() {
    let topic = |name: &str| format!("{},{}", unique(name), unique(name));
    let started = Instant::now();
    assert_success(&sluice_with_kafka(&[
        "gen",
        "--rate",
        "20",
        "--count",
        "10",
        "--topics",
        &topic("rate"),
    ]));
    // Record 9 is due at 0.45 s.
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let out = sluice_with_kafka(&[
        "gen",
        "--burst",
        "5",
        "--burst-interval",
        "0.5",
        "--count",
        "15",
        "--topics",
        &topic("burst"),
    ]);
    assert_success(&out);
    // Bursts start at 0, 0.5 and 1 s.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(
        text(&out.stderr).contains("sent 15 records"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn gen_reports_an_unreachable_broker() {
    let out = sluice()
        .args(["gen", "--count", "1", "--bootstrap-servers", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("error: cannot reach Kafka at 127.0.0.1:1"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn peek_from_beginning_end_and_offset() {
    let topic = topic_with_ids(0..10);
    assert_eq!(offsets(&peek_json(&[&topic, "-n", "3"])), [0, 1, 2]);
    assert_eq!(
        offsets(&peek_json(&[&topic, "-n", "3", "--from", "end"])),
        [7, 8, 9]
    );
    assert_eq!(
        offsets(&peek_json(&[
            &topic,
            "-n",
            "2",
            "--from",
            "5",
            "--partition",
            "0"
        ])),
        [5, 6]
    );
    // Fewer records than asked for: all of them, then exit.
    assert_eq!(peek_json(&[&topic, "-n", "100"]).len(), 10);
    assert_eq!(peek_json(&[&topic, "--from", "end", "-n", "100"]).len(), 10);
    assert!(peek_json(&[&topic, "--from", "10"]).is_empty());

    let record = &peek_json(&[&topic, "-n", "1", "--from", "4"])[0];
    assert_eq!(record["topic"], topic.as_str());
    assert_eq!(record["partition"], 0);
    assert_eq!(record["key"], serde_json::Value::Null);
    assert_eq!(
        record["value"],
        serde_json::json!({"id": 4, "name": {"first": "n4"}})
    );
    assert!(record["timestamp"].as_i64().unwrap() > 1_700_000_000_000);
}

#[test]
fn peek_from_a_time() {
    let topic = topic_with_ids(0..4);
    // The broker keeps the producer's timestamps. `since` is just after the first records';
    // once the clock has passed it, records produced are at or after it.
    let first = peek_json(&[&topic, "-n", "4"]);
    let newest = first
        .iter()
        .map(|r| r["timestamp"].as_i64().unwrap())
        .max()
        .unwrap();
    let since = chrono::DateTime::from_timestamp_millis(newest + 1).unwrap();
    support::wait_until("the clock passed `since`", Duration::from_secs(5), || {
        chrono::Utc::now() > since
    });
    produce(
        &topic,
        &(4..7)
            .map(|i| format!(r#"{{"id": {i}}}"#))
            .collect::<Vec<_>>(),
    );
    let records = peek_json(&[&topic, "--from", &since.to_rfc3339()]);
    assert_eq!(offsets(&records), [4, 5, 6]);
    let later = since + chrono::Duration::hours(1);
    assert!(peek_json(&[&topic, "--from", &later.to_rfc3339()]).is_empty());
}

#[test]
fn peek_formats_flatten_json_values_into_columns() {
    let topic = topic_with_ids(0..3);
    let csv = peek(&[&topic, "--format", "csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "partition,offset,timestamp,key,id,name.first");
    assert_eq!(lines.len(), 4);
    assert!(
        lines[1].starts_with("0,0,20") && lines[1].ends_with("Z,,0,n0"),
        "{}",
        lines[1]
    );

    let table = peek(&[&topic, "-n", "2"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].starts_with("partition  offset  timestamp                 key  id  name.first"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("---------  ------  ------------------------  ---  --  ----------"),
        "{table}"
    );
    // Aligned: every column starts where its header does.
    let column = lines[0].find("name.first").unwrap();
    assert_eq!(&lines[3][column..], "n1", "{table}");
}

#[test]
fn peek_an_empty_topic_returns_at_once() {
    let topic = unique("empty");
    create_topic(&topic, 2);
    let started = Instant::now();
    let out = sluice_with_kafka(&["peek", &topic]);
    assert_success(&out);
    assert_eq!(text(&out.stdout), "");
    assert!(
        text(&out.stderr).contains(&format!("no records in `{topic}`")),
        "{}",
        text(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn peek_a_missing_topic_or_partition_fails_clearly() {
    let topic = unique("missing");
    let out = sluice_with_kafka(&["peek", &topic]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        format!("error: topic `{topic}` does not exist (at {})", bootstrap())
    );
    assert!(!topics().contains(&topic), "peek must not create the topic");

    let topic = topic_with_ids(0..1);
    let out = sluice_with_kafka(&["peek", &topic, "--partition", "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("has no partition 3 (it has 1: 0 to 0)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn every_new_subcommand_has_help_with_examples() {
    for args in [
        &["gen", "--help"][..],
        &["peek", "--help"],
        &["transform", "--help"],
        &["transform", "new", "--help"],
        &["dev", "--help"],
    ] {
        let out = sluice().args(args).output().unwrap();
        assert_success(&out);
        assert!(
            text(&out.stdout).contains("Examples:"),
            "{args:?}:\n{}",
            text(&out.stdout)
        );
    }
}

/// Runs `cargo ARGS...` in `dir`, with a target folder shared by every run of this test, so that
/// only the scaffolded crate itself is compiled again.
fn cargo(dir: &std::path::Path, args: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", support::repo().join("target/scaffold"))
        .output()
        .unwrap();
    assert_success(&out);
}

#[test]
fn transform_new_scaffolds_a_crate_that_tests_builds_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = sluice()
        .args(["transform", "new", "rename-fields", "--path"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_success(&out);
    assert!(
        text(&out.stdout).contains("sluice transform build"),
        "{}",
        text(&out.stdout)
    );
    let crate_dir = dir.path().join("rename-fields");

    // A second time into the same folder: refused, nothing overwritten.
    let again = sluice()
        .args(["transform", "new", "rename-fields", "--path"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already exists and is not empty"),
        "{}",
        text(&again.stderr)
    );
    let bad = sluice()
        .args(["transform", "new", "9lives"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        text(&bad.stderr).contains("is not a project name"),
        "{}",
        text(&bad.stderr)
    );

    cargo(&crate_dir, &["test", "--quiet"]);
    cargo(
        &crate_dir,
        &["build", "--release", "--target", "wasm32-wasip2", "--quiet"],
    );
    let wasm = support::repo().join("target/scaffold/wasm32-wasip2/release/rename_fields.wasm");
    let out = support::try_with_stdin(
        &[
            wasm.to_str().unwrap(),
            "-c",
            "rename=msg:message",
            "-c",
            "add=source:web",
        ],
        "{\"id\": 1, \"msg\": \"hi\"}\n",
    );
    assert_success(&out);
    assert_eq!(
        text(&out.stdout),
        "{\"id\":1,\"message\":\"hi\",\"source\":\"web\"}\n"
    );
}
