//! Stateful transforms through `sluice try`: the windowed aggregate's results checked against a
//! straightforward reference computed here, on seed 002's shape (orders per customer, one-hour
//! tumbling windows, 10 minutes of allowed lateness) with out-of-order and late records.

mod support;

use std::collections::BTreeMap;
use support::{sluice, text, wasm};

const HOUR: i64 = 3_600_000;
const LATENESS: i64 = 600_000;

/// A deterministic stream of orders: event times move forward about a minute per order with up
/// to 25 minutes of disorder, so that some orders come after their window has closed.
fn orders(n: usize) -> Vec<(String, i64, f64)> {
    let mut state: u64 = 0x5eed_0002;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let start = 1_704_067_200_000; // 2024-01-01T00:00:00Z
    (0..n)
        .map(|i| {
            let customer = format!("c{}", next() % 7);
            let jitter = (next() % 1_500_000) as i64; // up to 25 minutes early
            let time = start + i as i64 * 60_000 - jitter;
            let amount = (next() % 10_000) as f64 / 100.0;
            (customer, time, amount)
        })
        .collect()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[test]
fn hourly_totals_per_customer_match_a_reference_with_late_orders_dead_lettered() {
    let orders = orders(3_000);
    // The reference: stream time is the highest event time so far; an order whose window
    // closed (end + lateness at or before stream time) is late; every other window is output.
    let mut stream_time = i64::MIN;
    let mut windows: BTreeMap<(String, i64), (u64, f64)> = BTreeMap::new();
    let mut late = 0;
    for (customer, time, amount) in &orders {
        stream_time = stream_time.max(*time);
        let start = time.div_euclid(HOUR) * HOUR;
        if start + HOUR + LATENESS <= stream_time {
            late += 1;
            continue;
        }
        let entry = windows.entry((customer.clone(), start)).or_default();
        entry.0 += 1;
        entry.1 += amount;
    }
    assert!(late > 20, "the data should have late orders: {late}");

    let input: String = orders
        .iter()
        .enumerate()
        .map(|(i, (customer, time, amount))| {
            format!(
                "{{\"order_id\":{i},\"customer_id\":\"{customer}\",\"amount\":{amount},\"order_timestamp\":\"{}\"}}\n",
                rfc3339(*time)
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.jsonl");
    std::fs::write(&path, input).unwrap();
    let out = sluice()
        .arg("try")
        .arg(wasm("windowed_aggregate"))
        .args(["--input"])
        .arg(&path)
        .args(["--batch-size", "37"])
        .args([
            "-c",
            "key=customer_id",
            "-c",
            "time=order_timestamp",
            "-c",
            "value=amount",
        ])
        .args([
            "-c",
            "window=1h",
            "-c",
            "allowed_lateness=10m",
            "-c",
            "aggregations=count,sum",
        ])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "late orders fail: {stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.contains(": late: ")).count(),
        late,
        "{stderr}"
    );

    let mut results: BTreeMap<(String, i64), (u64, f64)> = BTreeMap::new();
    for line in text(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = (
            v["key"].as_str().unwrap().to_string(),
            v["window_start"].as_i64().unwrap(),
        );
        assert_eq!(v["window_end"].as_i64().unwrap(), key.1 + HOUR, "{line}");
        let previous = results.insert(
            key,
            (v["count"].as_u64().unwrap(), v["sum"].as_f64().unwrap()),
        );
        assert!(previous.is_none(), "a window came out twice: {line}");
    }
    assert_eq!(
        results.keys().collect::<Vec<_>>(),
        windows.keys().collect::<Vec<_>>(),
        "the same windows"
    );
    for (key, (count, sum)) in &windows {
        let (got_count, got_sum) = results[key];
        assert_eq!(got_count, *count, "{key:?}");
        assert!(
            (got_sum - sum).abs() < 1e-6,
            "{key:?}: {got_sum} against {sum}"
        );
    }
}

#[test]
fn a_running_sum_writes_an_update_per_record() {
    let input = "{\"n\": 1}\n{\"n\": 2}\n{\"n\": 3.5}\n";
    let out = support::try_with_stdin(
        &[
            wasm("windowed_aggregate").to_str().unwrap(),
            "-c",
            "value=n",
            "-c",
            "aggregations=sum",
        ],
        input,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "{\"key\":null,\"sum\":1}\n{\"key\":null,\"sum\":3}\n{\"key\":null,\"sum\":6.5}\n"
    );
}

#[test]
fn pipelines_refuse_stateful_transforms_until_their_state_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[[pipeline]]\nname = \"agg\"\ninputs = [\"in\"]\noutputs = [\"out\"]\n\n[[pipeline.transform]]\nmodule = \"{}\"\nconfig = {{ value = \"n\" }}\n",
            wasm("windowed_aggregate").display()
        ),
    )
    .unwrap();
    let out = sluice()
        .args(["run", "--check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("pipelines do not run stateful transforms yet"),
        "{}",
        text(&out.stderr)
    );
}
