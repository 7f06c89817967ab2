//! `sluice run` against a real Apache Kafka broker (`tests/with-kafka.sh`), with kcat on the
//! other side: the seed scenario, a crash, poison records, fan-out and a graceful stop.

mod support;

use chrono::{DateTime, FixedOffset};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use support::kafka::{
    Sluice, consume, consume_at_least, count, create_topic, produce, unique, wait_for_count,
    write_config,
};
use support::wasm;

const WAIT: Duration = Duration::from_secs(90);

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Seed-000 records: `(value, expected timestamp)`, New York or Paris at random.
fn seed_records(n: usize) -> Vec<(String, f64, bool)> {
    let mut state: u64 = 0x2545F4914F6CDD1D;
    (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let utc_us = 1_707_217_868_355_006i64 + i as i64 * 1_003_457 + (state % 1000) as i64;
            let new_york = state.is_multiple_of(2);
            let offset = if new_york {
                FixedOffset::west_opt(5 * 3600)
            } else {
                FixedOffset::east_opt(3600)
            }
            .unwrap();
            let local = DateTime::from_timestamp_micros(utc_us)
                .unwrap()
                .with_timezone(&offset);
            let value = serde_json::json!({
                "date": local.format("%Y-%m-%d %H:%M:%S.%6f %z").to_string(),
                "message": i.to_string(),
            });
            let expected: f64 = format!("{}.{:03}", utc_us / 1000, utc_us % 1000)
                .parse()
                .unwrap();
            (value.to_string(), expected, new_york)
        })
        .collect()
}

fn ids(records: &[support::kafka::Consumed], field: &str) -> Vec<u64> {
    records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
            match &v[field] {
                serde_json::Value::String(s) => s.parse().unwrap(),
                other => other.as_u64().unwrap(),
            }
        })
        .collect()
}

#[test]
fn seed_000_two_timezones_merge_into_unified_timestamps() {
    let (tz1, tz2, out) = (
        unique("timezone1"),
        unique("timezone2"),
        unique("unified_timestamps"),
    );
    create_topic(&tz1, 3);
    create_topic(&tz2, 3);
    let records = seed_records(3000);
    let (ny, paris): (Vec<_>, Vec<_>) = records.iter().partition(|r| r.2);
    produce(&tz1, &ny.iter().map(|r| r.0.clone()).collect::<Vec<_>>());
    produce(&tz2, &paris.iter().map(|r| r.0.clone()).collect::<Vec<_>>());

    let dir = temp_dir();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[[pipeline]]
name = "{}"
inputs = ["{tz1}", "{tz2}"]
outputs = ["{out}"]
dead_letter = "{out}.dlq"

[[pipeline.transform]]
module = "{}"
config = {{ field = "date" }}
"#,
            unique("unify"),
            wasm("tz_normaliser").display()
        ),
    );
    let mut sluice = Sluice::start(&config);
    let output = consume_at_least(&out, records.len(), WAIT);
    assert_eq!(output.len(), records.len(), "log:\n{}", sluice.log());

    let expected: HashMap<u64, f64> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (i as u64, r.1))
        .collect();
    for record in &output {
        let v: serde_json::Value = serde_json::from_str(&record.value).unwrap();
        // `timestamp` takes `date`'s place, before `message`.
        let shape = record.value.starts_with(r#"{"timestamp":"#)
            && record.value.contains(r#","message":""#);
        assert!(
            shape && v.as_object().unwrap().len() == 2,
            "{}",
            record.value
        );
        let id: u64 = v["message"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            v["timestamp"].as_f64().unwrap(),
            expected[&id],
            "{}",
            record.value
        );
    }
    let unique_ids: HashSet<u64> = ids(&output, "message").into_iter().collect();
    assert_eq!(unique_ids.len(), records.len());

    sluice.signal("TERM");
    let status = sluice
        .wait(Duration::from_secs(30))
        .expect("exits within 30 s of SIGTERM");
    assert!(status.success(), "exit {status:?}; log:\n{}", sluice.log());
}

/// Once the consumer has handed over every record it has fetched, a batch goes to its idle
/// worker without waiting out `linger_ms`: at half load latency is not spent waiting for
/// records that are not there yet.
#[test]
fn a_batch_goes_to_an_idle_worker_without_waiting_its_linger() {
    let (input, out) = (unique("linger-in"), unique("linger-out"));
    create_topic(&input, 1);
    create_topic(&out, 1);
    let dir = temp_dir();
    // A linger far longer than the wait below, and batches far larger than the input.
    let extra = "linger_ms = 60000\nbatch_size = 100000";
    let pipeline = guest_pipeline(&unique("linger"), &input, &[&out], extra, "");
    let mut sluice = Sluice::start(&write_config(dir.path(), &pipeline));
    produce(&input, &numbered(5));
    let output = consume_at_least(&out, 5, Duration::from_secs(20));
    assert_eq!(
        ids(&output, "id").into_iter().collect::<HashSet<_>>(),
        (0..5).collect(),
        "log:\n{}",
        sluice.log()
    );
    sluice.signal("TERM");
    let status = sluice.wait(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "log:\n{}",
        sluice.log()
    );
}

/// A pipeline of the test guest: copies JSON records `{"id": n, ...}`, with extra guest config.
fn guest_pipeline(
    name: &str,
    input: &str,
    outputs: &[&str],
    extra: &str,
    guest_config: &str,
) -> String {
    let outputs = outputs
        .iter()
        .map(|o| format!("\"{o}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[[pipeline]]
name = "{name}"
inputs = ["{input}"]
outputs = [{outputs}]
{extra}

[[pipeline.transform]]
module = "{}"
config = {{ {guest_config} }}
"#,
        wasm("test_guest").display()
    )
}

fn numbered(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"id":{i},"payload":"{}"}}"#, "x".repeat(64)))
        .collect()
}

/// Consumes `topic` until ids 0..n are all there (duplicates allowed) or the wait runs out.
fn consume_until_all_ids(topic: &str, n: usize) -> Vec<support::kafka::Consumed> {
    // Counting is cheap, reading is not: read only once the topic holds enough records.
    support::poll(WAIT, || {
        if count(topic) < n {
            return None;
        }
        let records = consume(topic);
        let unique: HashSet<u64> = ids(&records, "id").into_iter().collect();
        (unique.len() >= n).then_some(records)
    })
    .unwrap_or_else(|| consume(topic))
}

/// A topic of `n` numbered records, an output topic, and a test-guest pipeline between them with
/// `extra` pipeline settings.
struct NumberedStream {
    out: String,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn numbered_stream(prefix: &str, partitions: u32, n: usize, extra: &str) -> NumberedStream {
    let (input, out) = (
        unique(&format!("{prefix}-in")),
        unique(&format!("{prefix}-out")),
    );
    create_topic(&input, partitions);
    produce(&input, &numbered(n));
    let dir = temp_dir();
    let config = write_config(
        dir.path(),
        &guest_pipeline(&unique(prefix), &input, &[&out], extra, ""),
    );
    NumberedStream {
        out,
        config,
        _dir: dir,
    }
}

/// Rewrites a configuration without its rate limit, for the run that finishes the stream.
fn remove_rate_limit(config: &std::path::Path) {
    let text = std::fs::read_to_string(config).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("max_records_per_second"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(config, text).unwrap();
}

#[test]
fn a_crash_loses_nothing() {
    let n = 30_000;
    // A rate limit keeps the first run mid-stream when it is killed.
    let NumberedStream { out, config, .. } =
        &numbered_stream("crash", 3, n, "max_records_per_second = 6000");

    let mut first = Sluice::start(config);
    let partial = consume_at_least(out, 3_000, WAIT);
    assert!(
        partial.len() >= 3_000 && partial.len() < n,
        "{} records before the kill; log:\n{}",
        partial.len(),
        first.log()
    );
    first.signal("KILL");
    first.wait(Duration::from_secs(10)).expect("killed");

    remove_rate_limit(config);
    let second = Sluice::start(config);
    let output = consume_until_all_ids(out, n);
    let seen: HashSet<u64> = ids(&output, "id").into_iter().collect();
    let missing: Vec<u64> = (0..n as u64)
        .filter(|i| !seen.contains(i))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "missing ids (first 10): {missing:?}; log:\n{}",
        second.log()
    );
}

#[test]
fn poison_records_go_to_the_dead_letter_topic_with_context() {
    let (input, out, dlq) = (
        unique("poison-in"),
        unique("poison-out"),
        unique("poison-dlq"),
    );
    create_topic(&input, 3);
    let mut values = numbered(500);
    values[17] = r#"{"id":17,"payload":"poison"}"#.into();
    values[250] = r#"{"id":250,"payload":"boom"}"#.into();
    values[499] = "not even json poison".into();
    produce(&input, &values);
    let dir = temp_dir();
    let name = unique("poison");
    let config = write_config(
        dir.path(),
        &guest_pipeline(
            &name,
            &input,
            &[&out],
            &format!("dead_letter = \"{dlq}\""),
            r#"fail_on = "poison", panic_on = "boom""#,
        ),
    );
    let sluice = Sluice::start(&config);
    let output = consume_at_least(&out, 497, WAIT);
    let dead = consume_at_least(&dlq, 3, WAIT);
    assert_eq!(output.len(), 497, "log:\n{}", sluice.log());
    let good: HashSet<u64> = ids(&output, "id").into_iter().collect();
    assert!(
        (0..499u64)
            .filter(|i| ![17, 250].contains(i))
            .all(|i| good.contains(&i))
    );

    assert_eq!(dead.len(), 3, "log:\n{}", sluice.log());
    let by_value: BTreeMap<&str, &support::kafka::Consumed> =
        dead.iter().map(|d| (d.value.as_str(), d)).collect();
    let poison = by_value[r#"{"id":17,"payload":"poison"}"#];
    assert_eq!(
        poison.headers["sluice.error.message"],
        format!(
            "rejected record at offset {}",
            poison.headers["sluice.source.offset"]
        )
    );
    assert_eq!(poison.headers["sluice.error.kind"], "rejected");
    assert_eq!(poison.headers["sluice.source.topic"], input);
    assert_eq!(poison.headers["sluice.pipeline"], name);
    assert_eq!(poison.headers["sluice.transform.module"], "test_guest");
    assert_eq!(poison.headers["sluice.transform.slot"], "0");
    assert_eq!(poison.headers["sluice.transform.version"], "1");
    assert_eq!(poison.headers["sluice.transform.sha256"].len(), 64);
    assert!(
        poison.headers["sluice.source.partition"]
            .parse::<i32>()
            .unwrap()
            < 3
    );
    let (_, metrics) = sluice.http_get("/metrics");
    let restarts = metrics
        .lines()
        .find(|l| l.starts_with("sluice_instance_restarts_total{"))
        .unwrap_or_default();
    assert!(
        restarts.ends_with(" 2"),
        "the panic restarts the instance twice (batch, then alone): {restarts}"
    );
    let boom = by_value[r#"{"id":250,"payload":"boom"}"#];
    assert_eq!(boom.headers["sluice.error.kind"], "panic");
    assert!(
        boom.headers["sluice.error.message"].contains("guest panicked on purpose"),
        "{:?}",
        boom.headers
    );
    assert!(by_value.contains_key("not even json poison"));
}

#[test]
fn a_routing_transform_fans_out_to_two_topics() {
    let (input, even, odd, dlq) = (
        unique("route-in"),
        unique("even"),
        unique("odd"),
        unique("route-dlq"),
    );
    create_topic(&input, 3);
    let mut values: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                r#"{{"id":{i},"route":"{}"}}"#,
                if i % 2 == 0 { &even } else { &odd }
            )
        })
        .collect();
    values.push(r#"{"id":1000,"route":"elsewhere"}"#.into());
    produce(&input, &values);
    let dir = temp_dir();
    let config = write_config(
        dir.path(),
        &guest_pipeline(
            &unique("route"),
            &input,
            &[&even, &odd],
            &format!("dead_letter = \"{dlq}\""),
            r#"route_field = "route""#,
        ),
    );
    let sluice = Sluice::start(&config);
    let evens = consume_at_least(&even, 500, WAIT);
    let odds = consume_at_least(&odd, 500, WAIT);
    let dead = consume_at_least(&dlq, 1, WAIT);
    let mut even_ids = ids(&evens, "id");
    even_ids.sort();
    assert_eq!(
        even_ids,
        (0..1000).step_by(2).collect::<Vec<u64>>(),
        "log:\n{}",
        sluice.log()
    );
    let mut odd_ids = ids(&odds, "id");
    odd_ids.sort();
    assert_eq!(odd_ids, (1..1000).step_by(2).collect::<Vec<u64>>());
    assert_eq!(dead.len(), 1);
    assert!(dead[0].headers["sluice.error.message"].starts_with(
        "routed an output to `elsewhere`, which is not one of the pipeline's outputs"
    ));
}

#[test]
fn sigterm_drains_and_a_restart_loses_nothing() {
    let (n, batch_size) = (30_000, 256);
    let limit = format!("max_records_per_second = 6000\nbatch_size = {batch_size}");
    let NumberedStream { out, config, .. } = &numbered_stream("term", 3, n, &limit);

    let mut first = Sluice::start(config);
    let partial = consume_at_least(out, 3_000, WAIT);
    assert!(partial.len() < n, "stream finished before SIGTERM");
    first.signal("TERM");
    let status = first
        .wait(Duration::from_secs(30))
        .expect("a graceful stop is bounded");
    assert!(status.success(), "exit {status:?}; log:\n{}", first.log());
    assert!(
        first.log().contains("pipeline stopped"),
        "log:\n{}",
        first.log()
    );

    remove_rate_limit(config);
    let second = Sluice::start(config);
    let output = consume_until_all_ids(out, n);
    let all = ids(&output, "id");
    let seen: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(seen.len(), n, "missing ids; log:\n{}", second.log());
    let duplicates = all.len() - seen.len();
    assert!(
        duplicates <= batch_size,
        "{duplicates} duplicates: more than one in-flight batch"
    );
    // The consumer group resumed where the drain committed, not from the beginning.
    assert!(duplicates < n / 10);
}

#[test]
fn without_a_dead_letter_topic_stop_halts_before_the_failed_record_and_skip_skips_it() {
    let (input, out_stop, out_skip) = (unique("policy-in"), unique("stop-out"), unique("skip-out"));
    create_topic(&input, 1);
    let mut values = numbered(300);
    values[150] = r#"{"id":150,"payload":"poison"}"#.into();
    produce(&input, &values);

    // stop: the process exits 1 naming the record, and the record is not committed past.
    let dir = temp_dir();
    let name = unique("stop");
    let config = write_config(
        dir.path(),
        &guest_pipeline(&name, &input, &[&out_stop], "", r#"fail_on = "poison""#),
    );
    let mut stopping = Sluice::start(&config);
    let status = stopping
        .wait(WAIT)
        .expect("a stopped pipeline ends the process");
    assert_eq!(status.code(), Some(1), "log:\n{}", stopping.log());
    assert!(
        stopping
            .log()
            .contains("the pipeline has no dead_letter and on_error = \\\"stop\\\""),
        "log:\n{}",
        stopping.log()
    );
    // Restarted without the failure, the same group resumes at or before the poison record.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace(r#"fail_on = "poison""#, ""),
    )
    .unwrap();
    let resumed = Sluice::start(&config);
    let output = consume_until_all_ids(&out_stop, 300);
    assert!(ids(&output, "id").contains(&150), "log:\n{}", resumed.log());

    // skip: everything but the poison record comes through, and the skip is logged.
    let dir = temp_dir();
    let config = write_config(
        dir.path(),
        &guest_pipeline(
            &unique("skip"),
            &input,
            &[&out_skip],
            "on_error = \"skip\"",
            r#"fail_on = "poison""#,
        ),
    );
    let skipping = Sluice::start(&config);
    let output = consume_at_least(&out_skip, 299, WAIT);
    let seen: HashSet<u64> = ids(&output, "id").into_iter().collect();
    assert_eq!(seen.len(), 299, "log:\n{}", skipping.log());
    assert!(!seen.contains(&150));
    skipping.wait_until("the skip is logged", WAIT, || {
        skipping.log().contains("skipping failed record")
    });
}

#[test]
fn a_second_instance_joining_mid_stream_takes_partitions_without_loss() {
    let n = 40_000;
    // Slow enough that the stream is far from done when the second instance joins.
    let NumberedStream { out, config, .. } =
        &numbered_stream("rebalance", 4, n, "max_records_per_second = 1000");

    let mut first = Sluice::start(config);
    assert!(
        wait_for_count(out, 1_000, WAIT) >= 1_000,
        "log:\n{}",
        first.log()
    );
    // The second instance joins the same group: the first must drain and commit what it gives up.
    let mut second = Sluice::start(config);
    second.wait_until("the second instance is assigned partitions", WAIT, || {
        second.log().contains("partition assigned")
    });
    assert!(
        count(out) < n,
        "the stream ended before the second instance joined; first:\n{}\nsecond:\n{}",
        first.log(),
        second.log()
    );
    let output = consume_until_all_ids(out, n);
    let all = ids(&output, "id");
    let seen: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(
        seen.len(),
        n,
        "missing ids; first log:\n{}\nsecond log:\n{}",
        first.log(),
        second.log()
    );
    assert!(
        first.log().contains("partitions revoked after draining"),
        "log:\n{}",
        first.log()
    );
    // Revoked partitions were committed after draining, so the new owner resumed where they
    // stopped.
    assert_eq!(
        all.len() - seen.len(),
        0,
        "duplicates after a clean rebalance"
    );
    for sluice in [&mut first, &mut second] {
        sluice.signal("TERM");
        assert!(
            sluice
                .wait(Duration::from_secs(30))
                .expect("stops")
                .success()
        );
    }
}

/// The seed-004 orders, each with a contact detail the PII stripper must mask.
fn seed_004_orders(orders: &[(&str, &str, &str, &str, &str)]) -> Vec<String> {
    orders
        .iter()
        .map(|(customer, order, price, currency, ts)| {
            format!(
                r#"{{"customer_id": "{customer}", "order_id": "{order}", "price": {price}, "currency": "{currency}", "ts": "{ts}", "contact": "customer{customer}@example.com"}}"#
            )
        })
        .collect()
}

#[test]
fn pii_then_enrich_joins_orders_with_a_live_customers_table() {
    let (customers, orders, out) = (unique("customers"), unique("orders"), unique("enriched"));
    create_topic(&customers, 1);
    create_topic(&orders, 1);
    support::kafka::produce_keyed(
        &customers,
        &[
            ("5", Some(r#"{"id":"5","name":"fred","age":34}"#)),
            ("7", Some(r#"{"id":"7","name":"sue","age":25}"#)),
            ("2", Some(r#"{"id":"2","name":"bill","age":51}"#)),
        ],
    );
    produce(
        &orders,
        &seed_004_orders(&[
            ("2", "13", "50.50", "usd", "2020-04-03T11:20:00"),
            ("7", "29", "15.00", "aud", "2020-04-02T12:36:00"),
            ("5", "17", "25.25", "eur", "2020-04-02T17:22:00"),
            ("5", "15", "13.75", "usd", "2020-04-03T02:55:00"),
            ("7", "22", "29.71", "aud", "2020-04-04T00:12:00"),
        ]),
    );
    let dir = temp_dir();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[[pipeline]]
name = "{}"
inputs = ["{orders}"]
outputs = ["{out}"]
dead_letter = "{out}.dlq"

[[pipeline.table]]
name = "customers"
topic = "{customers}"

[[pipeline.transform]]
module = "{}"

[[pipeline.transform]]
module = "{}"
config = {{ table = "customers", key_field = "customer_id", fields = "name:customer_name,age:customer_age" }}
"#,
            unique("etl"),
            wasm("pii_stripper").display(),
            wasm("enricher").display()
        ),
    );
    let sluice = Sluice::start(&config);
    let first = consume_at_least(&out, 5, WAIT);
    assert_eq!(first.len(), 5, "log:\n{}", sluice.log());
    let by_order = |records: &[support::kafka::Consumed]| -> BTreeMap<String, serde_json::Value> {
        records
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
                (v["order_id"].as_str().unwrap().to_string(), v)
            })
            .collect()
    };
    let enriched = by_order(&first);
    for (order, name, age, price) in [
        ("13", "bill", 51, 50.5),
        ("29", "sue", 25, 15.0),
        ("17", "fred", 34, 25.25),
        ("15", "fred", 34, 13.75),
        ("22", "sue", 25, 29.71),
    ] {
        let v = &enriched[order];
        assert_eq!(
            (v["customer_name"].as_str(), v["customer_age"].as_i64()),
            (Some(name), Some(age)),
            "{v}"
        );
        assert_eq!(v["price"].as_f64(), Some(price));
        assert!(
            !v["contact"].as_str().unwrap().contains("@example.com"),
            "PII left in {v}"
        );
    }
    // Prices keep their exact text through both transforms.
    assert!(
        first
            .iter()
            .any(|r| r.value.contains(r#""price": 15.00"#) || r.value.contains(r#""price":15.00"#)),
        "{first:?}"
    );

    // Mid-stream: fred is renamed, sue is deleted by a tombstone; later orders see both.
    support::kafka::produce_keyed(
        &customers,
        &[
            ("5", Some(r#"{"id":"5","name":"frederick","age":35}"#)),
            ("7", None),
        ],
    );
    // The tombstone comes after the rename: two keys left means the table has both.
    sluice.wait_until("the customers table applied the update", WAIT, || {
        let (_, metrics) = sluice.http_get("/metrics");
        metrics
            .lines()
            .any(|l| l.starts_with("sluice_table_entries{") && l.ends_with(" 2"))
    });
    produce(
        &orders,
        &seed_004_orders(&[
            ("5", "31", "9.99", "usd", "2020-04-05T10:00:00"),
            ("7", "32", "1.00", "aud", "2020-04-05T11:00:00"),
        ]),
    );
    let all = consume_at_least(&out, 7, WAIT);
    let enriched = by_order(&all);
    assert_eq!(
        enriched["31"]["customer_name"],
        "frederick",
        "log:\n{}",
        sluice.log()
    );
    assert_eq!(enriched["31"]["customer_age"], 35);
    assert_eq!(
        enriched["32"]["customer_name"],
        serde_json::Value::Null,
        "LEFT JOIN after a tombstone"
    );
    assert_eq!(enriched["32"]["customer_age"], serde_json::Value::Null);
    // Orders enriched before the update keep what they were given.
    assert_eq!(enriched["17"]["customer_name"], "fred");
}

#[test]
fn health_readiness_and_metrics_describe_a_running_pipeline() {
    let NumberedStream { out, config, .. } =
        &numbered_stream("observe", 2, 500, "dead_letter = \"observe-dlq\"");
    let sluice = Sluice::start(config);
    assert_eq!(sluice.http_get("/healthz"), (200, "ok\n".to_string()));
    consume_at_least(out, 500, WAIT);
    let (status, body) = sluice.http_get("/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""ready":true"#), "{body}");
    // Counters are read at scrape time; the last batch may still be awaiting its commit.
    let mut metrics = String::new();
    sluice.wait_until("500 records produced, in the metrics", WAIT, || {
        let (status, body) = sluice.http_get("/metrics");
        assert_eq!(status, 200, "{body}");
        metrics = body;
        metrics.contains("sluice_records_produced_total{pipeline=") && metrics.contains("} 500\n")
    });
    let line = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
    };
    assert!(
        line("sluice_records_consumed_total{").ends_with(" 500"),
        "{metrics}"
    );
    assert!(
        line("sluice_records_produced_total{").ends_with(" 500"),
        "{metrics}"
    );
    assert!(line("sluice_pipeline_running{").ends_with(" 1"));
    assert!(line("sluice_module_info{").contains(r#"module="test_guest""#));
    assert!(
        line("sluice_batch_duration_seconds_count{")
            .split(' ')
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
}
