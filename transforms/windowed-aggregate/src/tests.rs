use super::*;
use sluice_sdk::testing;

fn record(json: &str) -> Record<'_> {
    Record::from_value(json.as_bytes())
}

/// Moves stream time to the end of time; every output of the windows that close.
fn close_all(agg: &mut WindowedAggregate) -> Vec<serde_json::Value> {
    testing::advance(agg, i64::MAX)
        .into_iter()
        .flat_map(|(_, outputs)| outputs.unwrap())
        .map(|o| o.json())
        .collect()
}

fn aggregate(config: &[(&str, &str)]) -> WindowedAggregate {
    testing::reset_state();
    testing::init::<WindowedAggregate>(config).unwrap()
}

#[test]
fn tumbling_windows_close_after_the_allowed_lateness_and_late_records_fail() {
    let mut agg = aggregate(&[
        ("key", "customer"),
        ("time", "t"),
        ("value", "amount"),
        ("window", "10s"),
        ("allowed_lateness", "2s"),
        ("aggregations", "count,sum,max"),
    ]);
    for (t, amount) in [(1_000, 5), (9_999, 7), (10_000, 1), (3_000, 2)] {
        let json = format!(r#"{{"customer":"a","t":{t},"amount":{amount}}}"#);
        assert!(
            testing::process(&mut agg, &record(&json))
                .unwrap()
                .is_empty(),
            "final: nothing yet"
        );
    }
    // Stream time 10 000: the first window [0, 10 000) closes at 12 000.
    assert!(testing::advance(&mut agg, 11_999).is_empty());
    let closed = testing::advance(&mut agg, 12_000);
    assert_eq!(closed.len(), 1);
    let outputs = closed[0].1.as_ref().unwrap();
    assert_eq!(
        outputs[0].json(),
        serde_json::json!({"key": "a", "window_start": 0, "window_end": 10_000, "count": 3, "sum": 14, "max": 7})
    );
    assert_eq!(outputs[0].key.as_deref(), Some(&b"a"[..]));
    // A record for the closed window is late.
    let late = testing::process(&mut agg, &record(r#"{"customer":"a","t":500,"amount":1}"#));
    assert!(late.unwrap_err().to_string().starts_with("late:"));
}

#[test]
fn hopping_windows_count_a_record_in_every_window_that_holds_it() {
    let mut agg = aggregate(&[
        ("time", "t"),
        ("value", "x"),
        ("window", "10s"),
        ("slide", "5s"),
        ("aggregations", "count"),
    ]);
    assert!(
        testing::process(&mut agg, &record(r#"{"t":12000,"x":1}"#))
            .unwrap()
            .is_empty()
    );
    let closed = close_all(&mut agg);
    assert_eq!(
        closed,
        vec![
            serde_json::json!({"key": null, "window_start": 5000, "window_end": 15000, "count": 1}),
            serde_json::json!({"key": null, "window_start": 10000, "window_end": 20000, "count": 1}),
        ]
    );
}

#[test]
fn session_windows_span_a_burst_and_close_a_gap_after_it() {
    let mut agg = aggregate(&[
        ("key", "u"),
        ("time", "t"),
        ("value", "x"),
        ("session_gap", "10s"),
        ("allowed_lateness", "20s"),
        ("aggregations", "count,sum"),
    ]);
    for (t, x) in [(0, 1), (5_000, 2), (30_000, 4), (14_000, 8)] {
        let json = format!(r#"{{"u":"a","t":{t},"x":{x}}}"#);
        testing::process(&mut agg, &record(&json)).unwrap();
    }
    let closed = close_all(&mut agg);
    assert_eq!(
        closed,
        vec![
            serde_json::json!({"key": "a", "window_start": 0, "window_end": 14000, "count": 3, "sum": 11}),
            serde_json::json!({"key": "a", "window_start": 30000, "window_end": 30000, "count": 1, "sum": 4}),
        ]
    );
}

#[test]
fn updates_are_written_per_record_and_a_running_aggregate_needs_no_window() {
    let mut running = aggregate(&[("value", "x")]);
    let sums: Vec<serde_json::Value> = [1, 2, 3]
        .iter()
        .map(|x| {
            let out = testing::process(&mut running, &record(&format!(r#"{{"x":{x}}}"#))).unwrap();
            out[0].json()["sum"].clone()
        })
        .collect();
    assert_eq!(sums, vec![1, 3, 6]);
    let out = testing::process(&mut running, &record(r#"{"x":4}"#)).unwrap();
    assert_eq!(
        out[0].json(),
        serde_json::json!({"key": null, "count": 4, "sum": 10, "avg": 2.5, "min": 1, "max": 4})
    );
}

#[test]
fn dates_in_the_seeds_format_and_rfc_3339_are_event_times() {
    assert_eq!(
        parse_time("2024-02-05 10:01:52.884548 -0500"),
        Some(1_707_145_312_884)
    );
    assert_eq!(parse_time("1970-01-01T00:00:01Z"), Some(1_000));
    assert_eq!(parse_time("yesterday"), None);
    assert_eq!(parse_duration("1h"), Ok(3_600_000));
    assert!(parse_duration("1 hour").is_err());
}

#[test]
fn configurations_that_make_no_sense_are_refused_with_the_key_named() {
    for (config, expected) in [
        (vec![("value", "x"), ("slide", "5s")], "slide:"),
        (
            vec![("value", "x"), ("window", "5s"), ("slide", "10s")],
            "slide:",
        ),
        (vec![("window", "5s")], "value:"),
        (
            vec![("value", "x"), ("aggregations", "count,median")],
            "aggregations: `median`",
        ),
        (vec![("value", "x"), ("window", "soon")], "window:"),
        (vec![("value", "x"), ("emit", "final")], "emit:"),
        (vec![("value", "x"), ("colour", "red")], "colour"),
    ] {
        let error = testing::init::<WindowedAggregate>(&config)
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{config:?}: {error}");
    }
}
