//! Stateful transforms on a real broker, exactly-once: the windowed aggregate's hourly totals
//! per customer (seed 002's shape) while its `sluice run` is killed with SIGKILL with windows
//! open, and while a second member takes some of its partitions and gives them back. Each
//! window's result must come out once, equal to a reference computed here from the input as
//! the broker holds it (per partition, since each partition's task has its own stream time).

mod support;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::kafka::{Sluice, bootstrap, create_topic, produce_keyed, unique, write_config};
use support::wasm;

const HOUR: i64 = 3_600_000;
const LATENESS: i64 = 600_000;
const PARTITIONS: u32 = 4;

/// Orders `{"customer_id", "t", "amount"}` keyed by customer: event times move forward a
/// minute per order with up to 25 minutes of disorder, so that some orders are late.
fn orders(n: usize) -> Vec<(String, String)> {
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
            let customer = format!("c{}", next() % 24);
            let time = start + i as i64 * 60_000 - (next() % 1_500_000) as i64;
            let amount = (next() % 10_000) as f64 / 100.0;
            let value = format!(r#"{{"customer_id":"{customer}","t":{time},"amount":{amount}}}"#);
            (customer, value)
        })
        .collect()
}

/// Window results by (customer, window start): (window end, count, sum).
type Windows = BTreeMap<(String, i64), (i64, u64, f64)>;

/// What the windowed aggregate must output for the input as the broker holds it: per partition,
/// in offset order, stream time is the highest event time so far; an order whose window has
/// closed is late; a window is output once its partition's stream time reaches its end plus
/// the lateness. Returns the windows and the number of late orders.
fn reference(input: &str) -> (Windows, usize) {
    let mut by_partition: BTreeMap<i32, Vec<(i64, serde_json::Value)>> = BTreeMap::new();
    for record in support::kafka::consume(input) {
        let value: serde_json::Value = serde_json::from_str(&record.value).unwrap();
        by_partition
            .entry(record.partition)
            .or_default()
            .push((record.offset, value));
    }
    let (mut windows, mut late) = (Windows::new(), 0);
    for records in by_partition.values_mut() {
        records.sort_by_key(|(offset, _)| *offset);
        let mut stream_time = i64::MIN;
        let mut open = Windows::new();
        for (_, order) in records.iter() {
            let time = order["t"].as_i64().unwrap();
            stream_time = stream_time.max(time);
            let start = time.div_euclid(HOUR) * HOUR;
            if start + HOUR + LATENESS <= stream_time {
                late += 1;
                continue;
            }
            let customer = order["customer_id"].as_str().unwrap().to_string();
            let window = open
                .entry((customer, start))
                .or_insert((start + HOUR, 0, 0.0));
            window.1 += 1;
            window.2 += order["amount"].as_f64().unwrap();
        }
        windows.extend(
            open.into_iter()
                .filter(|(_, (end, _, _))| end + LATENESS <= stream_time),
        );
    }
    (windows, late)
}

/// Creates `topic` without time-based retention: results carry their windows' event times,
/// which are years old, and the broker would otherwise delete them as expired while the test
/// runs.
fn create_kept_topic(topic: &str, partitions: u32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    let new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(1))
        .set("retention.ms", "-1");
    let created =
        futures::executor::block_on(admin.create_topics([&new], &AdminOptions::new())).unwrap();
    for result in created {
        result.unwrap_or_else(|(topic, e)| panic!("cannot create {topic}: {e}"));
    }
}

/// Every committed record of `topic` now: its value and its `sluice.error.kind` header, if
/// any. A partition is read once the reader's position reaches its high watermark (commit
/// markers included), not at its first end-of-partition event, which can come early.
fn read_committed(topic: &str) -> Vec<(String, Option<String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("stateful-reader"))
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut list = rdkafka::TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for partition in 0..partitions {
        list.add_partition_offset(topic, partition, rdkafka::Offset::Beginning)
            .unwrap();
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .unwrap();
        ends.insert(partition, high);
    }
    consumer.assign(&list).unwrap();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let kind = message.headers().and_then(|headers| {
                    let header = headers.iter().find(|h| h.key == "sluice.error.kind")?;
                    Some(String::from_utf8_lossy(header.value?).into_owned())
                });
                let value = String::from_utf8_lossy(message.payload().unwrap_or_default());
                records.push((value.into_owned(), kind));
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                let position = consumer.position().unwrap();
                let at = position
                    .find_partition(topic, partition)
                    .and_then(|p| p.offset().to_raw())
                    .unwrap_or(-1);
                if ends.get(&partition).is_some_and(|end| at >= *end) {
                    ends.remove(&partition);
                }
            }
            Some(Err(e)) => panic!("{e}"),
            None => {}
        }
    }
    records
}

/// Changelog records read to restore state, by the `state_restored` lines of a member's log.
fn restored_records(log: &str) -> u64 {
    (log.lines())
        .filter(|l| l.contains("event=\"state_restored\""))
        .filter_map(|l| {
            l.split(" records=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// The window results in `output`, failing on a window that came out twice.
fn output_windows(output: &str) -> Windows {
    let mut windows = Windows::new();
    for (value, _) in read_committed(output) {
        let v: serde_json::Value = serde_json::from_str(&value).unwrap();
        let key = (
            v["key"].as_str().unwrap().to_string(),
            v["window_start"].as_i64().unwrap(),
        );
        let result = (
            v["window_end"].as_i64().unwrap(),
            v["count"].as_u64().unwrap(),
            v["sum"].as_f64().unwrap(),
        );
        assert!(
            windows.insert(key, result).is_none(),
            "a window came out twice: {value}"
        );
    }
    windows
}

#[test]
fn window_results_survive_sigkill_and_partitions_moving_between_members_exactly_once() {
    const N: usize = 8_000;
    let (input, output, dead) = (unique("win-in"), unique("win-out"), unique("win-dlq"));
    create_topic(&input, PARTITIONS);
    create_kept_topic(&output, PARTITIONS);
    create_topic(&dead, PARTITIONS);
    let orders = orders(N);
    let keyed: Vec<(&str, Option<&str>)> = (orders.iter())
        .map(|(k, v)| (k.as_str(), Some(v.as_str())))
        .collect();
    produce_keyed(&input, &keyed);
    let (expected, late) = reference(&input);
    assert!(
        late > 20 && expected.len() > 1_000,
        "late {late}, windows {}",
        expected.len()
    );

    let group = unique("windows");
    let body = format!(
        r#"[kafka.consumer]
# A killed member's partitions move after 6 s rather than librdkafka's 45 s.
"session.timeout.ms" = 6000
"heartbeat.interval.ms" = 1000

[[pipeline]]
name = "windows"
# Its own group, so that its changelog topic is its own too.
group_id = "{group}"
inputs = ["{input}"]
outputs = ["{output}"]
dead_letter = "{dead}"
guarantee = "exactly-once"
commit_interval_ms = 300
batch_size = 40
# Slow enough that the kill and the rebalances land with windows open.
max_records_per_second = 800

[[pipeline.transform]]
module = "{}"
config = {{ key = "customer_id", time = "t", value = "amount", window = "1h", allowed_lateness = "10m", aggregations = "count,sum" }}
"#,
        wasm("windowed_aggregate").display()
    );
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = write_config(first_dir.path(), &body);
    let written = || support::kafka::count(&output);
    let mut first = Sluice::start(&config);
    first.wait_until("the first windows", Duration::from_secs(60), || {
        written() >= 200
    });
    // SIGKILL with windows open: the restarted member restores its state from the changelogs.
    first.signal("KILL");
    first.wait(Duration::from_secs(10)).expect("killed");
    let mut first = Sluice::start(&config);
    let before = written();
    first.wait_until("windows after the restart", Duration::from_secs(90), || {
        written() >= before + 300
    });
    assert!(
        restored_records(&first.log()) > 0,
        "the restarted member restores what the killed one wrote: {}",
        first.log()
    );
    // A second member takes some partitions (restoring their state from the changelogs), then
    // leaves, and the first takes them back (from its checkpoints and what came after).
    let mut second = Sluice::start(&write_config(second_dir.path(), &body));
    second.wait_until(
        "the second member's partitions",
        Duration::from_secs(60),
        || second.log().contains("partition assigned"),
    );
    let before = written();
    first.wait_until("windows with two members", Duration::from_secs(90), || {
        written() >= before + 300
    });
    second.signal("TERM");
    assert!(
        second
            .wait(Duration::from_secs(60))
            .expect("the second member stops")
            .success(),
        "{}",
        second.log()
    );

    // Until every window is out, or 180 s pass: the comparison below says what is missing.
    support::poll(Duration::from_secs(180), || {
        (output_windows(&output).len() >= expected.len()).then_some(())
    });
    first.signal("TERM");
    let status = first.wait(Duration::from_secs(60)).expect("stopped");
    assert!(status.success(), "{}", first.log());

    let got = output_windows(&output);
    let missing: Vec<_> = expected.keys().filter(|k| !got.contains_key(k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !expected.contains_key(k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} windows missing, {} extra; missing: {:?}; extra: {:?}; log:\n{}",
        missing.len(),
        extra.len(),
        &missing[..missing.len().min(10)],
        &extra[..extra.len().min(10)],
        first.log()
    );
    for (key, (end, count, sum)) in &expected {
        let (got_end, got_count, got_sum) = got[key];
        assert_eq!((got_end, got_count), (*end, *count), "{key:?}");
        assert!(
            (got_sum - sum).abs() < 1e-6,
            "{key:?}: {got_sum} against {sum}"
        );
    }
    let dead_letters = read_committed(&dead);
    assert!(
        dead_letters
            .iter()
            .all(|(_, kind)| kind.as_deref() == Some("late")),
        "only late orders are dead letters: {:?}",
        &dead_letters[..dead_letters.len().min(5)]
    );
    assert_eq!(dead_letters.len(), late, "late orders");
    println!(
        "stateful exactly-once: {} windows and {late} late orders, as the reference",
        expected.len()
    );
}

/// A stateful pipeline joins partition p of every input in one task: inputs with different
/// partition counts are refused at start-up, with a message that says which.
#[test]
fn inputs_that_are_not_co_partitioned_are_refused_at_start_up() {
    let (a, b) = (unique("copart-a"), unique("copart-b"));
    create_topic(&a, 2);
    create_topic(&b, 3);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"[[pipeline]]
name = "agg"
inputs = ["{a}", "{b}"]
outputs = ["{}"]

[[pipeline.transform]]
module = "{}"
config = {{ value = "n" }}
"#,
            unique("copart-out"),
            wasm("windowed_aggregate").display()
        ),
    );
    let mut run = Sluice::start(&config);
    let status = run
        .wait(Duration::from_secs(60))
        .expect("sluice run should refuse to start");
    assert!(!status.success());
    let expected = format!("the inputs are not co-partitioned: `{a}` has 2, `{b}` has 3");
    assert!(run.log().contains(&expected), "{}", run.log());
}

/// Seed 004's `shipped_orders` (orders JOIN shipments ON order_id WITHIN 7 DAYS) with the
/// stream-join transform on two co-partitioned topics, exactly-once: every pair within the bound
/// comes out once, as a nested loop over every pair says, and no other.
#[test]
fn orders_join_their_shipments_within_seven_days_across_two_co_partitioned_topics() {
    const ORDERS: usize = 1_500;
    const DAY: i64 = 86_400_000;
    let (orders, shipments, output) = (
        unique("join-orders"),
        unique("join-shipments"),
        unique("join-out"),
    );
    create_topic(&orders, 3);
    create_topic(&shipments, 3);
    create_kept_topic(&output, 3);
    let ts = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    };
    let start = 1_585_699_200_000; // 2020-04-01T00:00:00Z
    let mut state: u64 = 0x5eed_0004;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // Orders ten minutes apart; most have a shipment up to ten days later, some two.
    let (mut order_records, mut shipment_records) = (Vec::new(), Vec::new());
    let (mut order_times, mut shipment_list) = (BTreeMap::new(), Vec::new());
    for i in 0..ORDERS {
        let (id, time) = (format!("{i}"), start + i as i64 * 600_000);
        let price = (next() % 10_000) as f64 / 100.0;
        order_records.push((
            id.clone(),
            format!(r#"{{"customer_id":"{}","order_id":"{id}","price":{price},"currency":"usd","ts":"{}"}}"#, next() % 9, ts(time)),
        ));
        order_times.insert(id.clone(), time);
        for carrier in ["ups", "dhl"].iter().take((next() % 3) as usize) {
            let shipped = time + (next() % (10 * DAY as u64)) as i64 / 1000 * 1000;
            shipment_records.push((
                id.clone(),
                format!(
                    r#"{{"order_id":"{id}","carrier":"{carrier}","ts":"{}"}}"#,
                    ts(shipped)
                ),
            ));
            shipment_list.push((id.clone(), carrier.to_string(), shipped));
        }
    }
    let mut expected: Vec<(String, String)> = (shipment_list.iter())
        .filter(|(id, _, shipped)| (shipped - order_times[id]).abs() <= 7 * DAY)
        .map(|(id, carrier, _)| (id.clone(), carrier.clone()))
        .collect();
    expected.sort();
    assert!(expected.len() > 500 && expected.len() < shipment_list.len());
    for (topic, records) in [(&orders, &order_records), (&shipments, &shipment_records)] {
        let records: Vec<(&str, Option<&str>)> = (records.iter())
            .map(|(k, v)| (k.as_str(), Some(v.as_str())))
            .collect();
        produce_keyed(topic, &records);
    }

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"[[pipeline]]
name = "shipped-orders"
group_id = "{}"
inputs = ["{orders}", "{shipments}"]
outputs = ["{output}"]
guarantee = "exactly-once"
commit_interval_ms = 200

[[pipeline.transform]]
module = "{}"
# The two inputs are read side by side, not in event-time order: a generous grace keeps every
# record on time, so that the result is the plain join.
config = {{ left_topic = "{orders}", right_topic = "{shipments}", left_key = "order_id", right_key = "order_id", within = "7d", grace = "60d", time = "ts", left_fields = "order_id,price", right_fields = "carrier" }}
"#,
            unique("shipped-orders"),
            wasm("stream_join").display()
        ),
    );
    let mut run = Sluice::start(&config);
    let joined = || -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = read_committed(&output)
            .into_iter()
            .map(|(value, _)| {
                let v: serde_json::Value = serde_json::from_str(&value).unwrap();
                (
                    v["order_id"].as_str().unwrap().to_string(),
                    v["carrier"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        pairs.sort();
        pairs
    };
    run.wait_until("every joined pair", Duration::from_secs(120), || {
        joined().len() >= expected.len()
    });
    run.signal("TERM");
    assert!(
        run.wait(Duration::from_secs(60))
            .expect("stopped")
            .success(),
        "{}",
        run.log()
    );
    assert_eq!(joined(), expected, "the joined pairs");
}

/// `idle_timeout_ms`: once the input stops, the last window (which no later record closes)
/// closes by the wall clock, and its result is committed exactly-once although its transaction
/// covers no input offset.
#[test]
fn an_idle_tasks_last_windows_close_by_the_wall_clock_exactly_once() {
    let (input, output) = (unique("idle-in"), unique("idle-out"));
    create_topic(&input, 2);
    create_kept_topic(&output, 2);
    // Four keys, each with records at 0 s, 1 s, ... 59 s of the minute [0, 60 s): every task's
    // stream time ends 1 s before the window's end.
    let mut records = Vec::new();
    let mut expected = BTreeMap::new();
    for second in 0..60i64 {
        for key in ["a", "b", "c", "d"] {
            let n = second * 10 + key.len() as i64;
            records.push((
                key.to_string(),
                format!(r#"{{"k":"{key}","t":{},"n":{n}}}"#, second * 1000),
            ));
            let entry = expected.entry(key.to_string()).or_insert((0u64, 0i64));
            *entry = (entry.0 + 1, entry.1 + n);
        }
    }
    let records: Vec<(&str, Option<&str>)> = (records.iter())
        .map(|(k, v)| (k.as_str(), Some(v.as_str())))
        .collect();
    produce_keyed(&input, &records);

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"[[pipeline]]
name = "idle"
group_id = "{}"
inputs = ["{input}"]
outputs = ["{output}"]
guarantee = "exactly-once"
commit_interval_ms = 200
idle_timeout_ms = 500

[[pipeline.transform]]
module = "{}"
config = {{ key = "k", time = "t", value = "n", window = "1m", aggregations = "count,sum" }}
"#,
            unique("idle"),
            wasm("windowed_aggregate").display()
        ),
    );
    let mut run = Sluice::start(&config);
    let windows = || -> BTreeMap<String, (u64, i64)> {
        (read_committed(&output).into_iter())
            .map(|(value, _)| {
                let v: serde_json::Value = serde_json::from_str(&value).unwrap();
                assert_eq!(
                    (v["window_start"].as_i64(), v["window_end"].as_i64()),
                    (Some(0), Some(60_000)),
                    "{value}"
                );
                let result = (
                    v["count"].as_u64().unwrap(),
                    v["sum"].as_f64().unwrap() as i64,
                );
                (v["key"].as_str().unwrap().to_string(), result)
            })
            .collect()
    };
    run.wait_until("every key's window", Duration::from_secs(60), || {
        windows().len() >= expected.len()
    });
    run.signal("TERM");
    assert!(
        run.wait(Duration::from_secs(60))
            .is_some_and(|s| s.success()),
        "{}",
        run.log()
    );
    assert_eq!(windows(), expected);
    assert_eq!(
        read_committed(&output).len(),
        expected.len(),
        "each window once"
    );
}
