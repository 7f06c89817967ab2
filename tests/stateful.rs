//! Stateful transforms through `sluice try`: the windowed aggregate's results checked against a
//! straightforward reference computed here, on seed 002's shape (orders per customer, one-hour
//! tumbling windows, 10 minutes of allowed lateness) with out-of-order and late records.

mod support;

use std::collections::BTreeMap;
use support::{text, wasm};

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

#[test]
fn hourly_totals_per_customer_match_a_reference_with_late_orders_dead_lettered() {
    let orders = orders(3_000);
    // The reference: stream time is the highest event time so far; an order whose window
    // closed (end + lateness at or before stream time) is late; every other window is output.
    let mut stream_time = i64::MIN;
    let mut expected = Results::new();
    let mut late = 0;
    for (customer, time, amount) in &orders {
        stream_time = stream_time.max(*time);
        let start = time.div_euclid(HOUR) * HOUR;
        if start + HOUR + LATENESS <= stream_time {
            late += 1;
            continue;
        }
        let entry = expected
            .entry((customer.clone(), start))
            .or_insert((start + HOUR, 0, 0.0));
        entry.1 += 1;
        entry.2 += amount;
    }
    assert!(late > 20, "the data should have late orders: {late}");
    // Times as RFC 3339 strings, the seed's shape.
    let rfc3339 = |ms: i64| {
        let time = chrono::DateTime::from_timestamp_millis(ms).unwrap();
        format!(
            "\"{}\"",
            time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )
    };
    let config = ["window=1h", "allowed_lateness=10m"];
    let (results, got_late) = run_windows(&orders, rfc3339, "37", &config);
    assert_eq!(got_late, late, "late orders");
    assert_same(&results, &expected, "batches of 37");
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

/// Window results by (key, window start): (window end, count, sum).
type Results = BTreeMap<(String, i64), (i64, u64, f64)>;

/// Runs the windowed aggregate over `orders`, their times written by `time` (JSON), in batches
/// of `batch_size`, with `config`; its results and the number of late orders, which fail.
fn run_windows(
    orders: &[(String, i64, f64)],
    time: impl Fn(i64) -> String,
    batch_size: &str,
    config: &[&str],
) -> (Results, usize) {
    let input: String = orders
        .iter()
        .map(|(customer, t, amount)| {
            format!(
                "{{\"customer_id\":\"{customer}\",\"amount\":{amount},\"t\":{}}}\n",
                time(*t)
            )
        })
        .collect();
    let mut args = vec![
        wasm("windowed_aggregate").display().to_string(),
        "--batch-size".into(),
        batch_size.into(),
    ];
    for setting in [
        "key=customer_id",
        "time=t",
        "value=amount",
        "aggregations=count,sum",
    ]
    .iter()
    .chain(config)
    {
        args.extend(["-c".to_string(), setting.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = support::try_with_stdin(&args, &input);
    let stderr = text(&out.stderr);
    let late = stderr.lines().filter(|l| l.contains(": late: ")).count();
    assert_eq!(
        out.status.success(),
        late == 0,
        "only late orders fail: {stderr}"
    );
    let mut results = BTreeMap::new();
    for line in text(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = (
            v["key"].as_str().unwrap().to_string(),
            v["window_start"].as_i64().unwrap(),
        );
        let value = (
            v["window_end"].as_i64().unwrap(),
            v["count"].as_u64().unwrap(),
            v["sum"].as_f64().unwrap(),
        );
        assert!(results.insert(key, value).is_none(), "twice: {line}");
    }
    (results, late)
}

#[test]
fn session_windows_match_a_reference_whatever_the_batch_size() {
    const GAP: i64 = 4 * 60_000;
    const SESSION_LATENESS: i64 = 2 * 60_000;
    let orders = orders(2_000);
    // The reference: a session closes when stream time reaches its end + gap + lateness; an
    // order within the gap of open sessions merges them; one whose session would already be
    // closed is late.
    let mut stream_time = i64::MIN;
    let mut sessions: BTreeMap<String, Vec<(i64, i64, u64, f64)>> = BTreeMap::new();
    let mut late = 0;
    for (customer, time, amount) in &orders {
        stream_time = stream_time.max(*time);
        let list = sessions.entry(customer.clone()).or_default();
        let open = |s: &(i64, i64, u64, f64)| s.1 + GAP + SESSION_LATENESS > stream_time;
        let reaches = |s: &(i64, i64, u64, f64)| s.1 + GAP >= *time && s.0 <= time + GAP;
        let (mut merged, kept): (Vec<_>, Vec<_>) =
            list.drain(..).partition(|s| open(s) && reaches(s));
        let start = merged.iter().map(|s| s.0).chain([*time]).min().unwrap();
        let end = merged.iter().map(|s| s.1).chain([*time]).max().unwrap();
        *list = kept;
        if end + GAP + SESSION_LATENESS <= stream_time {
            late += 1;
            list.append(&mut merged);
            continue;
        }
        let count = merged.iter().map(|s| s.2).sum::<u64>() + 1;
        let sum = merged.iter().map(|s| s.3).sum::<f64>() + amount;
        list.push((start, end, count, sum));
    }
    let expected: Results = sessions
        .into_iter()
        .flat_map(|(customer, list)| {
            list.into_iter()
                .map(move |(start, end, count, sum)| ((customer.clone(), start), (end, count, sum)))
        })
        .collect();
    assert!(
        late > 0 && expected.len() > 50,
        "late {late}, sessions {}",
        expected.len()
    );
    let config = ["session_gap=4m", "allowed_lateness=2m"];
    for batch_size in ["1", "50"] {
        let (results, got_late) = run_windows(&orders, |t| t.to_string(), batch_size, &config);
        assert_eq!(got_late, late, "late orders, batches of {batch_size}");
        assert_same(&results, &expected, &format!("batches of {batch_size}"));
    }
}

/// The same windows, each with the same end, count and sum (up to rounding).
fn assert_same(results: &Results, expected: &Results, context: &str) {
    assert_eq!(
        results.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the same windows, {context}"
    );
    for (key, (end, count, sum)) in expected {
        let got = results[key];
        assert_eq!((got.0, got.1), (*end, *count), "{key:?}, {context}");
        assert!(
            (got.2 - sum).abs() < 1e-6,
            "{key:?}, {context}: {} against {sum}",
            got.2
        );
    }
}
