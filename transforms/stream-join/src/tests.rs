use super::*;
use serde_json::json;
use sluice_sdk::testing::{self, Output};

const ORDERS: &str = "orders";
const SHIPMENTS: &str = "shipments";

/// A join of orders and shipments on `order_id`, event time in `t`, with `extra` config.
fn join(extra: &[(&str, &str)]) -> StreamJoin {
    testing::reset_state();
    let mut config = vec![
        ("left_topic", ORDERS),
        ("right_topic", SHIPMENTS),
        ("left_key", "order_id"),
        ("right_key", "order_id"),
        ("time", "t"),
    ];
    config.extend_from_slice(extra);
    testing::init::<StreamJoin>(&config).unwrap()
}

/// Runs one record of `topic` at `offset` through the join: its outputs, or its error.
fn send(
    join: &mut StreamJoin,
    topic: &str,
    offset: i64,
    value: &str,
) -> Result<Vec<Output>, Error> {
    let record = Record {
        topic,
        offset,
        value: Some(value.as_bytes()),
        ..Record::default()
    };
    testing::process(join, &record)
}

/// Like [`send`], for a record that must succeed: its outputs' values.
fn joined(join: &mut StreamJoin, topic: &str, offset: i64, value: &str) -> Vec<Value> {
    send(join, topic, offset, value)
        .unwrap()
        .iter()
        .map(Output::json)
        .collect()
}

/// Moves stream time to `time`: the outputs of the timers that fire.
fn fire(join: &mut StreamJoin, time: i64) -> Vec<Output> {
    testing::advance(join, time)
        .into_iter()
        .flat_map(|(_, outputs)| outputs.unwrap())
        .collect()
}

/// How many records the join keeps.
fn kept_count() -> usize {
    state::scan(&[], None, u32::MAX).len()
}

#[test]
fn inner_join_matches_within_the_bound_in_either_arrival_order() {
    let mut join = join(&[("within", "10s"), ("grace", "1h")]);
    // Left first: a shipment exactly `within` after the order joins, one 1 ms further does not.
    assert!(
        joined(
            &mut join,
            ORDERS,
            0,
            r#"{"order_id":"o1","t":0,"amount":5}"#
        )
        .is_empty()
    );
    let out = send(
        &mut join,
        SHIPMENTS,
        0,
        r#"{"order_id":"o1","t":10000,"carrier":"ups"}"#,
    )
    .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].value_str(),
        Some(
            r#"{"key":"o1","order_id":"o1","t":0,"amount":5,"right_order_id":"o1","right_t":10000,"carrier":"ups"}"#
        ),
        "left fields, then right ones, renamed on a clash"
    );
    assert_eq!(out[0].key.as_deref(), Some(&b"o1"[..]));
    assert_eq!(out[0].timestamp, Some(10_000), "the later event time");
    assert!(joined(&mut join, SHIPMENTS, 1, r#"{"order_id":"o1","t":10001}"#).is_empty());

    // Right first, and the shipment before the order: |difference| counts.
    assert!(joined(&mut join, SHIPMENTS, 2, r#"{"order_id":"o2","t":50000}"#).is_empty());
    assert!(joined(&mut join, SHIPMENTS, 3, r#"{"order_id":"o2","t":39999}"#).is_empty());
    let out = send(&mut join, ORDERS, 1, r#"{"order_id":"o2","t":45000}"#).unwrap();
    let found: Vec<_> = out.iter().map(|o| (o.json(), o.timestamp)).collect();
    assert_eq!(
        found,
        vec![
            (
                json!({"key": "o2", "order_id": "o2", "t": 45000, "right_order_id": "o2", "right_t": 39999}),
                Some(45_000)
            ),
            (
                json!({"key": "o2", "order_id": "o2", "t": 45000, "right_order_id": "o2", "right_t": 50000}),
                Some(50_000)
            ),
        ],
        "both shipments are within 10 s of the order (5 001 ms before, 5 000 after); kept records join earliest first"
    );
    assert!(joined(&mut join, SHIPMENTS, 5, r#"{"order_id":"o2","t":34999}"#).is_empty());

    // A key that is another's prefix is another key.
    assert!(joined(&mut join, SHIPMENTS, 4, r#"{"order_id":"o10","t":0}"#).is_empty());
}

#[test]
fn every_pair_within_the_bound_gives_one_output() {
    let mut join = join(&[
        ("within", "1h"),
        ("left_fields", "line"),
        ("right_fields", "parcel"),
    ]);
    for (offset, line) in [(0, "a"), (1, "b")] {
        let order = format!(r#"{{"order_id":"o1","t":0,"line":"{line}"}}"#);
        assert!(joined(&mut join, ORDERS, offset, &order).is_empty());
    }
    let mut pairs = Vec::new();
    for (offset, (t, parcel)) in [(1_000, 1), (3_600_000, 2), (3_600_001, 3)]
        .into_iter()
        .enumerate()
    {
        let shipment = format!(r#"{{"order_id":"o1","t":{t},"parcel":{parcel}}}"#);
        for out in joined(&mut join, SHIPMENTS, offset as i64, &shipment) {
            pairs.push((out["line"].clone(), out["parcel"].clone()));
        }
    }
    assert_eq!(
        pairs,
        vec![
            (json!("a"), json!(1)),
            (json!("b"), json!(1)),
            (json!("a"), json!(2)),
            (json!("b"), json!(2)),
        ],
        "two orders with equal times both kept; the third parcel is out of range"
    );
}

#[test]
fn selected_fields_come_in_the_order_listed_and_clashing_names_get_a_prefix() {
    let mut join = join(&[
        ("within", "1d"),
        ("left_fields", "amount, key, order_id, missing"),
        ("right_fields", "carrier,amount,key"),
    ]);
    assert!(
        joined(
            &mut join,
            ORDERS,
            0,
            r#"{"t":5,"order_id":17,"key":"k","amount":1.50,"secret":"x"}"#
        )
        .is_empty()
    );
    let out = send(
        &mut join,
        SHIPMENTS,
        0,
        r#"{"amount":2,"order_id":"17","carrier":"dhl","key":{"a":[1, 2]},"t":"1970-01-01T00:00:00.009Z"}"#,
    )
    .unwrap();
    assert_eq!(
        out[0].value_str(),
        Some(
            r#"{"key":17,"amount":1.50,"left_key":"k","order_id":17,"carrier":"dhl","right_amount":2,"right_key":{"a":[1, 2]}}"#
        ),
        "the number 17 and the string \"17\" are one key; values are copied as written"
    );
    assert_eq!(out[0].key.as_deref(), Some(&b"17"[..]));
    assert_eq!(out[0].timestamp, Some(9));
}

#[test]
fn a_left_join_writes_a_left_record_that_joined_nothing_once_no_partner_can_come() {
    let mut join = join(&[("within", "10s"), ("kind", "left")]);
    assert!(joined(&mut join, ORDERS, 0, r#"{"order_id":"o1","t":0}"#).is_empty());
    assert!(joined(&mut join, ORDERS, 1, r#"{"order_id":"o2","t":1000}"#).is_empty());
    assert_eq!(
        joined(&mut join, SHIPMENTS, 0, r#"{"order_id":"o1","t":5000}"#).len(),
        1
    );
    assert!(joined(&mut join, SHIPMENTS, 1, r#"{"order_id":"nobody","t":6000}"#).is_empty());

    // A shipment up to 10 s after o2 (at 11 000) is not late until stream time passes 21 000,
    // so o2 waits until 21 001 (2 x within + grace + 1 after it). o1 joined: nothing for it.
    assert!(fire(&mut join, 21_000).is_empty());
    let out = fire(&mut join, 21_001);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].json(),
        json!({"key": "o2", "order_id": "o2", "t": 1000})
    );
    assert_eq!(out[0].key.as_deref(), Some(&b"o2"[..]));
    assert_eq!(out[0].timestamp, Some(1_000));
    assert!(fire(&mut join, i64::MAX).is_empty(), "written once");
    assert_eq!(kept_count(), 0);
}

#[test]
fn a_record_joins_a_partner_whose_own_bound_stream_time_has_passed() {
    let mut join = join(&[("within", "10s"), ("kind", "left")]);
    assert!(joined(&mut join, ORDERS, 0, r#"{"order_id":"o3","t":30000}"#).is_empty());
    // Stream time moves to 45 000, past o3's time + within: o3 is kept all the same...
    assert!(joined(&mut join, ORDERS, 1, r#"{"order_id":"o4","t":45000}"#).is_empty());
    assert!(fire(&mut join, 45_000).is_empty());
    // ... for this shipment at 39 000 is not late (39 000 + 10 000 >= 45 000) and joins it.
    let out = joined(&mut join, SHIPMENTS, 0, r#"{"order_id":"o3","t":39000}"#);
    assert_eq!(
        out,
        vec![
            json!({"key": "o3", "order_id": "o3", "t": 30000, "right_order_id": "o3", "right_t": 39000})
        ]
    );
    let unmatched: Vec<Value> = fire(&mut join, i64::MAX).iter().map(Output::json).collect();
    assert_eq!(
        unmatched,
        vec![json!({"key": "o4", "order_id": "o4", "t": 45000})],
        "o3 joined"
    );
}

#[test]
fn late_records_fail_and_are_neither_kept_nor_joined() {
    let mut join = join(&[("within", "10s"), ("grace", "5s")]);
    assert!(joined(&mut join, ORDERS, 0, r#"{"order_id":"o1","t":100000}"#).is_empty());
    assert!(joined(&mut join, ORDERS, 1, r#"{"order_id":"o2","t":90000}"#).is_empty());
    // 84 999 + 10 000 + 5 000 < 100 000: late, although it is within 10 s of o2.
    let late = send(&mut join, SHIPMENTS, 0, r#"{"order_id":"o2","t":84999}"#).unwrap_err();
    assert!(late.message().starts_with("late:"), "{late}");
    let late = send(&mut join, ORDERS, 2, r#"{"order_id":"o5","t":0}"#).unwrap_err();
    assert!(late.message().starts_with("late:"), "{late}");
    assert_eq!(kept_count(), 2, "late records are not kept");
    // 85 000 is on time, and joins o2.
    assert_eq!(
        joined(&mut join, SHIPMENTS, 1, r#"{"order_id":"o2","t":85000}"#).len(),
        1
    );
}

#[test]
fn kept_records_are_dropped_once_stream_time_passes_their_bound() {
    let mut join = join(&[("within", "10s"), ("grace", "2s")]);
    joined(&mut join, ORDERS, 0, r#"{"order_id":"o1","t":0}"#);
    joined(&mut join, SHIPMENTS, 0, r#"{"order_id":"o1","t":3000}"#);
    joined(&mut join, SHIPMENTS, 1, r#"{"order_id":"o9","t":-5000}"#);
    assert_eq!(kept_count(), 3);
    // Each is kept until its time + 2 x 10 s + 2 s + 1 ms.
    assert!(fire(&mut join, 17_000).is_empty());
    assert_eq!(kept_count(), 3);
    assert!(fire(&mut join, 17_001).is_empty());
    assert_eq!(kept_count(), 2, "the one at -5 000 went at -5 000 + 22 001");
    fire(&mut join, 22_000);
    assert_eq!(kept_count(), 2);
    fire(&mut join, 22_001);
    assert_eq!(kept_count(), 1);
    assert!(
        fire(&mut join, i64::MAX).is_empty(),
        "an inner join writes nothing then"
    );
    assert_eq!(kept_count(), 0);
    assert!(
        testing::advance(&mut join, i64::MAX).is_empty(),
        "no timers left"
    );
}

#[test]
fn records_that_cannot_be_joined_fail_with_the_reason() {
    let mut join = join(&[("within", "1s")]);
    let mut error =
        |topic: &str, value: &str| send(&mut join, topic, 0, value).unwrap_err().to_string();
    assert_eq!(
        error("returns", r#"{"order_id":"o1","t":0}"#),
        "the record's topic `returns` is neither left_topic `orders` nor right_topic `shipments`"
    );
    assert_eq!(
        error(SHIPMENTS, r#"{"id":"o1","t":0}"#),
        "the right key field `order_id` is missing"
    );
    assert_eq!(
        error(ORDERS, r#"{"order_id":null,"t":0}"#),
        "the left key field `order_id` is not a string or a number: null"
    );
    assert_eq!(
        error(ORDERS, r#"{"order_id":"o1"}"#),
        "the time field `t` is missing"
    );
    assert!(
        error(ORDERS, r#"{"order_id":"o1","t":"soon"}"#)
            .starts_with("the time field `t` is not a date")
    );
    assert!(error(ORDERS, "[1]").starts_with("value is not a JSON object"));
    assert_eq!(
        testing::process(
            &mut join,
            &Record {
                topic: ORDERS,
                ..Record::default()
            }
        )
        .unwrap_err()
        .message(),
        "record has no value"
    );
    assert_eq!(kept_count(), 0);

    // Without `time`, the record timestamp is the event time.
    let mut by_timestamp = testing::init::<StreamJoin>(&[
        ("left_topic", ORDERS),
        ("right_topic", SHIPMENTS),
        ("left_key", "order_id"),
        ("right_key", "order_id"),
        ("within", "1s"),
    ])
    .unwrap();
    let record = |topic, timestamp| Record {
        topic,
        timestamp,
        value: Some(br#"{"order_id":"o1"}"#),
        ..Record::default()
    };
    assert!(
        testing::process(&mut by_timestamp, &record(ORDERS, None))
            .unwrap_err()
            .message()
            .starts_with("the record has no timestamp")
    );
    testing::process(&mut by_timestamp, &record(ORDERS, Some(1_000))).unwrap();
    let out = testing::process(&mut by_timestamp, &record(SHIPMENTS, Some(1_500))).unwrap();
    assert_eq!(out[0].timestamp, Some(1_500));
}

#[test]
fn state_keys_hold_any_key_bytes_unambiguously() {
    for key in [&b""[..], b"o1", b"o1\xff\xff", &[0; 300]] {
        for (side, time) in [(Side::Left, i64::MIN), (Side::Right, -1), (Side::Left, 7)] {
            let state_key = kept_key(side, key, time, 3, 99).unwrap();
            assert_eq!(
                decode_kept_key(&state_key),
                Some(KeptKey {
                    side,
                    key: key.to_vec(),
                    time
                })
            );
        }
    }
    assert!(sortable(-1) < sortable(0) && sortable(i64::MIN) < sortable(-1));
    assert_eq!(
        decode_kept_key(b"W\x00\x01a"),
        None,
        "not a kept record's key"
    );
    assert!(kept_key(Side::Left, &[0; 70_000], 0, 0, 0).is_err());
}

#[test]
fn durations_and_dates_parse() {
    assert_eq!(parse_duration("7d"), Ok(604_800_000));
    assert_eq!(parse_duration("500ms"), Ok(500));
    assert_eq!(parse_duration(" 30s "), Ok(30_000));
    assert!(parse_duration("1 hour").is_err());
    assert!(parse_duration("-1s").is_err());
    assert!(parse_duration("99999999999999999d").is_err());
    assert_eq!(
        parse_time("2024-02-05 10:01:52.884548 -0500"),
        Some(1_707_145_312_884)
    );
    assert_eq!(parse_time("1970-01-01T00:00:01+01:00"), Some(-3_599_000));
    assert_eq!(
        parse_time("2020-04-03T11:20:00"),
        Some(1_585_912_800_000),
        "seed 004's `ts`, as UTC"
    );
    assert_eq!(parse_time("yesterday"), None);
}

#[test]
fn configurations_that_make_no_sense_are_refused_with_the_key_named() {
    let base = [
        ("left_topic", "orders"),
        ("right_topic", "shipments"),
        ("left_key", "order_id"),
        ("right_key", "order_id"),
        ("within", "7d"),
    ];
    assert!(testing::init::<StreamJoin>(&base).is_ok());
    for (change, expected) in [
        (("left_topic", ""), "left_topic: must not be empty"),
        (
            ("right_topic", "orders"),
            "right_topic: `orders` is left_topic too",
        ),
        (("within", "a week"), "within: `a week` is not a duration"),
        (("within", "7w"), "within: `7w`: the unit must be"),
        (("grace", "-1s"), "grace:"),
        (
            ("within", "5000000000000000000ms"),
            "within, grace: too long",
        ),
        (
            ("kind", "outer"),
            "config key `kind`: invalid value `outer`",
        ),
        (
            ("left_fields", "a,,b"),
            "left_fields: `a,,b` has an empty field name",
        ),
        (
            ("right_fields", "a,b,a"),
            "right_fields: `a` is listed twice",
        ),
        (("time", " "), "time: must not be empty"),
        (("colour", "red"), "unknown config key `colour`"),
    ] {
        let mut config = base.to_vec();
        config.push(change);
        let error = testing::init::<StreamJoin>(&config)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with(expected), "{change:?}: {error}");
    }
    for missing in [
        "left_topic",
        "right_topic",
        "left_key",
        "right_key",
        "within",
    ] {
        let config: Vec<_> = base
            .iter()
            .copied()
            .filter(|(k, _)| *k != missing)
            .collect();
        let error = testing::init::<StreamJoin>(&config)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!("config key `{missing}` is required")),
            "{error}"
        );
    }
}

/// A small deterministic generator (a 64-bit LCG), so that the test needs no dependency.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: u64) -> i64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % bound) as i64
    }
}

/// One generated input record.
#[derive(Debug, Clone)]
struct Generated {
    side: Side,
    id: i64,
    time: i64,
    value: String,
}

/// Orders over a few keys, most with a shipment up to twice `within` later (some with two),
/// and stray shipments; in an arrival order up to `disorder` off event time.
fn generate(seed: u64, within: i64, disorder: i64) -> Vec<Generated> {
    let mut random = Lcg(seed);
    let mut records = Vec::new();
    for i in 0..300 {
        let id = random.below(40);
        let time = i * within / 10 + random.below(within as u64);
        records.push(Generated {
            side: Side::Left,
            id,
            time,
            value: format!(r#"{{"order_id":{id},"t":{time},"amount":{i}}}"#),
        });
        for _ in 0..random.below(3) {
            let shipped = time + random.below(2 * within as u64) - within / 4;
            records.push(Generated {
                side: Side::Right,
                id,
                time: shipped,
                value: format!(r#"{{"order_id":"{id}","t":{shipped},"carrier":"c{i}"}}"#),
            });
        }
    }
    // Arrival order: event time plus a random delay.
    let mut arrival: Vec<(i64, Generated)> = records
        .into_iter()
        .map(|r| (r.time + random.below(disorder as u64), r))
        .collect();
    arrival.sort_by_key(|(at, _)| *at);
    arrival.into_iter().map(|(_, r)| r).collect()
}

/// An output as compared: key, timestamp, value.
type Row = (Vec<u8>, Option<i64>, String);

fn row(output: &Output) -> Row {
    (
        output.key.clone().unwrap_or_default(),
        output.timestamp,
        output.json().to_string(),
    )
}

/// What a nested loop over every pair of records that are not late gives.
fn reference(records: &[Generated], within: i64, grace: i64, left_join: bool) -> Vec<Row> {
    let mut now = i64::MIN;
    let on_time: Vec<&Generated> = records
        .iter()
        .filter(|r| {
            now = now.max(r.time);
            r.time + within + grace >= now
        })
        .collect();
    let fields = |r: &Generated| -> Value { serde_json::from_str(&r.value).unwrap() };
    let mut rows = Vec::new();
    for left in on_time.iter().filter(|r| r.side == Side::Left) {
        let l = fields(left);
        let mut matched = false;
        for right in on_time.iter().filter(|r| r.side == Side::Right) {
            if right.id == left.id && (left.time - right.time).abs() <= within {
                matched = true;
                let r = fields(right);
                let value = json!({
                    "key": l["order_id"], "order_id": l["order_id"], "amount": l["amount"],
                    "t": l["t"], "carrier": r["carrier"], "right_t": r["t"],
                });
                rows.push((
                    left.id.to_string().into_bytes(),
                    Some(left.time.max(right.time)),
                    value.to_string(),
                ));
            }
        }
        if left_join && !matched {
            let value = json!({
                "key": l["order_id"], "order_id": l["order_id"], "amount": l["amount"], "t": l["t"],
            });
            rows.push((
                left.id.to_string().into_bytes(),
                Some(left.time),
                value.to_string(),
            ));
        }
    }
    rows.sort();
    rows
}

#[test]
fn outputs_agree_with_a_nested_loop_over_every_pair_despite_disorder() {
    let (within, grace) = (1_000, 200);
    for (seed, kind) in [(4, "inner"), (5, "left"), (6, "left")] {
        let records = generate(seed, within, 1_500);
        let mut join = join(&[
            ("within", "1s"),
            ("grace", "200ms"),
            ("kind", kind),
            ("left_fields", "order_id,amount,t"),
            ("right_fields", "carrier,t"),
        ]);
        let mut rows = Vec::new();
        let mut late = 0;
        let mut offsets = [0, 0];
        for (i, record) in records.iter().enumerate() {
            let (topic, offset) = match record.side {
                Side::Left => (ORDERS, &mut offsets[0]),
                Side::Right => (SHIPMENTS, &mut offsets[1]),
            };
            *offset += 1;
            match send(&mut join, topic, *offset, &record.value) {
                Ok(outputs) => rows.extend(outputs.iter().map(row)),
                Err(e) if e.message().starts_with("late:") => late += 1,
                Err(e) => panic!("{record:?}: {e}"),
            }
            // Timers fire after each batch; batches of a few records.
            if i % 5 == 4 {
                let now = state::stream_time().unwrap();
                rows.extend(fire(&mut join, now).iter().map(row));
            }
        }
        rows.extend(fire(&mut join, i64::MAX).iter().map(row));
        rows.sort();

        let expected = reference(&records, within, grace, kind == "left");
        let mut now = i64::MIN;
        let late_in_reference = records
            .iter()
            .filter(|r| {
                now = now.max(r.time);
                r.time + within + grace < now
            })
            .count();
        assert_eq!(late, late_in_reference, "the same records are late");
        let on_time = records.len() - late;
        assert!(
            late > 10 && expected.len() > 200,
            "the data exercises lateness and joins: {late} late, {} outputs",
            expected.len()
        );
        assert_eq!(
            reference(&records, within, grace, false).len() < expected.len(),
            kind == "left",
            "a left join has unmatched orders"
        );
        assert_eq!(rows.len(), expected.len(), "{kind}, seed {seed}");
        assert_eq!(rows, expected, "{kind}, seed {seed}");
        assert_eq!(kept_count(), 0, "{on_time} records kept, all dropped");
    }
}
