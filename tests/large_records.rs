//! Large records: batches are bounded by bytes as well as by records, so records of several MiB
//! never push a transform past its memory cap, and a record too large for any batch is
//! dead-lettered as `too_large` instead of trapping the transform.

mod support;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};
use support::kafka::{Sluice, bootstrap, unique, write_config};
use support::{sluice, text, try_with_stdin, wasm};

const MIB: usize = 1024 * 1024;
/// What a single topic, and the clients, accept here: above the 10 MiB record.
const MAX_MESSAGE_BYTES: &str = "16777216";

/// A seed-000 log line of `size` bytes: the date to normalise, then padding.
fn big_line(n: usize, size: usize) -> String {
    let head = format!(r#"{{"n": {n}, "date": "2024-02-05 10:01:52.884548 -0500", "pad": ""#);
    format!("{head}{}\"}}", "x".repeat(size - head.len() - 2))
}

#[test]
fn fifty_records_of_4_mib_go_through_try_with_the_default_limits_without_a_trap() {
    // From a file: 200 MiB through stdin would fill the pipes both ways before any output is read.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("large.jsonl");
    let lines: String = (0..50).map(|n| big_line(n, 4 * MIB) + "\n").collect();
    std::fs::write(&input, lines).unwrap();
    let tz = wasm("tz_normaliser");
    let out = sluice()
        .args([
            "try",
            tz.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("trapped"), "{stderr}");
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 50);
    for (n, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with(&format!(
                r#"{{"n": {n}, "timestamp":1707145312884.548, "pad": "xxx"#
            )) || line.starts_with(&format!(
                r#"{{"n":{n},"timestamp":1707145312884.548,"pad":"xxx"#
            )),
            "{}",
            &line[..80]
        );
        assert!(line.len() > 4 * MIB - 100, "{}", line.len());
    }
}

#[test]
fn a_line_larger_than_a_batch_fails_as_too_large_and_the_others_still_run() {
    let input = format!("{}\n{}\n", big_line(0, 9 * MIB), big_line(1, 1000));
    let tz = wasm("tz_normaliser");
    let out = try_with_stdin(&[tz.to_str().unwrap()], &input);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("line 1: too_large: the record is 9437184 bytes, more than a batch may hold (--batch-max-bytes 8388608)"),
        "{stderr}"
    );
    assert_eq!(text(&out.stdout).lines().count(), 1);
}

fn client() -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap())
        .set("message.max.bytes", MAX_MESSAGE_BYTES);
    config
}

fn create_large_topics(topics: &[&str]) {
    let admin: AdminClient<DefaultClientContext> = client().create().unwrap();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(t, 1, TopicReplication::Fixed(1))
                .set("max.message.bytes", MAX_MESSAGE_BYTES)
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for result in runtime
        .block_on(admin.create_topics(&new, &AdminOptions::new()))
        .unwrap()
    {
        result.unwrap();
    }
}

/// A record read back: its value and headers.
type Read = (Vec<u8>, Vec<(String, String)>);

/// Every record of `topic` (one partition), read until `count` are in or `timeout` passes.
fn read(topic: &str, count: usize, timeout: Duration) -> Vec<Read> {
    let consumer: BaseConsumer = client()
        .set("group.id", unique("large-reader"))
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&list).unwrap();
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while records.len() < count {
        assert!(
            Instant::now() < deadline,
            "{topic}: {} of {count} records after {timeout:?}",
            records.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap();
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            records.push((message.payload().unwrap_or_default().to_vec(), headers));
        }
    }
    records
}

#[test]
fn large_records_flow_through_a_pipeline_and_one_too_large_is_dead_lettered() {
    let (input, output, dead) = (unique("large-in"), unique("large-out"), unique("large-dlq"));
    create_large_topics(&[&input, &output, &dead]);
    let producer: ThreadedProducer<DefaultProducerContext> = client().create().unwrap();
    for n in 0..50 {
        let size = if n == 25 { 10 * MIB } else { 4 * MIB };
        let line = big_line(n, size);
        producer
            .send(BaseRecord::<(), _>::to(&input).payload(&line))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(60)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"[kafka.producer]
"message.max.bytes" = {MAX_MESSAGE_BYTES}

[[pipeline]]
name = "large"
inputs = ["{input}"]
outputs = ["{output}"]
dead_letter = "{dead}"

[[pipeline.transform]]
module = "{}"
"#,
            wasm("tz_normaliser").display()
        ),
    );
    let sluice = Sluice::start(&config);
    let outputs = read(&output, 49, Duration::from_secs(180));
    let dead_letters = read(&dead, 1, Duration::from_secs(60));
    let log = sluice.log();
    assert!(!log.contains("trapped"), "{log}");
    let numbers: Vec<u64> = outputs
        .iter()
        .map(|(value, _)| {
            let v: serde_json::Value = serde_json::from_slice(value).unwrap();
            assert_eq!(v["timestamp"], serde_json::json!(1707145312884.548));
            assert!(value.len() > 4 * MIB - 100);
            v["n"].as_u64().unwrap()
        })
        .collect();
    let expected: Vec<u64> = (0..50).filter(|&n| n != 25).collect();
    assert_eq!(
        numbers, expected,
        "every record but the large one, in order"
    );
    let (value, headers) = &dead_letters[0];
    assert_eq!(value.len(), 10 * MIB, "the record as it was read");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("sluice.error.kind"), Some("too_large"));
    assert_eq!(header("sluice.source.offset"), Some("25"));
    assert!(
        header("sluice.error.message").is_some_and(|m| m.contains("10485760 bytes")),
        "{headers:?}"
    );
}
