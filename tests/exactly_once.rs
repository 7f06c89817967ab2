//! Exactly-once on a real broker: Sluice killed with SIGKILL mid-stream, restarted, and a
//! read_committed reader of the outputs and dead letters still sees every input id once.

mod support;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::kafka::{Sluice, bootstrap, create_topic, unique, write_config};
use support::wasm;

/// Every record of `topics` from the beginning to the end, read as `isolation`; the `id` of
/// each JSON value, and how many times it was seen.
fn read_ids(topics: &[&str], isolation: &str) -> BTreeMap<u64, usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("eos-reader"))
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        for p in metadata.topics()[0].partitions() {
            list.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)
                .unwrap();
        }
    }
    let mut open = list.count();
    consumer.assign(&list).unwrap();
    let mut ids = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while open > 0 {
        assert!(Instant::now() < deadline, "reading {topics:?} timed out");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let value: serde_json::Value =
                    serde_json::from_slice(message.payload().unwrap()).unwrap();
                *ids.entry(value["id"].as_u64().unwrap()).or_default() += 1;
            }
            Some(Err(KafkaError::PartitionEOF(_))) => open -= 1,
            Some(Err(e)) => panic!("{e}"),
            None => {}
        }
    }
    ids
}

/// Sends records `{"id": i}` for every id of `ids` over `inputs`, every 500th a poison record
/// for the dead-letter topic, at about 6,000 a second (so that Sluice is killed while records
/// flow), and waits for the broker to have them all.
fn produce(inputs: &[String; 2], ids: std::ops::Range<u64>) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for id in ids {
        let value = if id % 500 == 0 {
            format!(r#"{{"id": {id}, "poison": true}}"#)
        } else {
            format!(r#"{{"id": {id}}}"#)
        };
        let key = id.to_string();
        let topic = &inputs[(id % 2) as usize];
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        while let Err((_, returned)) = producer.send(record) {
            record = returned;
            producer.flush(Duration::from_millis(100)).ok();
        }
        if id % 300 == 299 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Records in `topic` now, committed or not (the sum of its partitions' high watermarks).
fn written(topic: &str) -> usize {
    support::kafka::count(topic)
}

#[test]
fn sigkill_mid_stream_loses_and_repeats_nothing_for_read_committed_readers() {
    const N: u64 = 60_000;
    let inputs = [unique("eos-in-a"), unique("eos-in-b")];
    let (output, dead) = (unique("eos-out"), unique("eos-dlq"));
    for topic in inputs.iter().chain([&output, &dead]) {
        create_topic(topic, 4);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"[kafka.consumer]
# A killed member's partitions move after 6 s rather than librdkafka's 45 s.
"session.timeout.ms" = 6000
"heartbeat.interval.ms" = 1000

[[pipeline]]
name = "eos"
inputs = ["{}", "{}"]
outputs = ["{output}"]
dead_letter = "{dead}"
guarantee = "exactly-once"
# Long transactions: each kill lands in one that holds written records, which read_uncommitted
# readers must then see as aborted.
commit_interval_ms = 2000

[[pipeline.transform]]
module = "{}"
config = {{ fail_on = "poison" }}
"#,
            inputs[0],
            inputs[1],
            wasm("test_guest").display()
        ),
    );
    let mut sluice = Sluice::start(&config);
    sluice.wait_until(
        "exactly-once pipeline started",
        Duration::from_secs(60),
        || sluice.log().contains("partition assigned"),
    );
    // Two kills while records flow, each once the outputs have grown by a few thousand since
    // the last (re)start: the input arrives over about 10 s, and a killed member's partitions
    // move to its successor after 6 s, who then has a backlog to work through.
    let producer = {
        let inputs = inputs.clone();
        std::thread::spawn(move || produce(&inputs, 0..N))
    };
    let mut steps = Vec::new();
    for kill in 0..2 {
        let before = written(&output);
        support::wait_until(
            "outputs growing before a kill",
            Duration::from_secs(120),
            || written(&output) >= before + 5_000,
        );
        sluice.signal("KILL");
        sluice.wait(Duration::from_secs(10)).expect("killed");
        steps.push(format!(
            "kill {} after {} records written",
            kill + 1,
            written(&output)
        ));
        sluice = Sluice::start(&config);
    }
    producer.join().unwrap();
    // Everything is processed once the group's committed offsets reach the inputs' ends: then
    // a graceful stop commits the last transaction.
    let inputs_end: usize = inputs.iter().map(|t| written(t)).sum();
    assert_eq!(inputs_end, N as usize);
    support::wait_until(
        "every input id in the outputs and dead letters",
        Duration::from_secs(180),
        || {
            let seen = read_ids(&[&output, &dead], "read_committed");
            seen.len() == N as usize
        },
    );
    sluice.signal("TERM");
    let status = sluice.wait(Duration::from_secs(60)).expect("stopped");
    assert!(status.success(), "{}", sluice.log());

    let committed = read_ids(&[&output, &dead], "read_committed");
    let lost: Vec<u64> = (0..N).filter(|id| !committed.contains_key(id)).collect();
    let duplicates: Vec<(&u64, &usize)> = committed.iter().filter(|(_, n)| **n > 1).collect();
    let uncommitted: usize = read_ids(&[&output, &dead], "read_uncommitted")
        .values()
        .sum();
    println!(
        "exactly-once: {N} ids, {} lost, {} duplicates; {uncommitted} records in the log, aborted ones included; steps: {}",
        lost.len(),
        duplicates.len(),
        steps.join("; ")
    );
    assert!(lost.is_empty(), "lost: {:?}", &lost[..lost.len().min(20)]);
    assert!(
        duplicates.is_empty(),
        "duplicates: {:?}",
        &duplicates[..duplicates.len().min(20)]
    );
    // The kills left aborted writes in the log: read_uncommitted sees them, so this test would
    // catch a pipeline that is not transactional.
    assert!(
        uncommitted > N as usize,
        "no aborted writes in the log ({uncommitted} records)"
    );
    let dead_letters = read_ids(&[&dead], "read_committed");
    assert_eq!(dead_letters.len(), (N as usize).div_ceil(500));
}

/// A transactional id that the broker's ACLs refuse stops `sluice run` at start-up, with a
/// message that says so and what to grant, rather than a pipeline that never commits.
#[test]
fn a_transactional_id_the_acls_refuse_fails_start_up_with_a_message_that_says_so() {
    let broker = support::kafka::OwnBroker::start(&[("SLUICE_BROKER_SASL_USER", "app:app-secret")]);
    broker.run("deny-transactions", &["app"]);
    let sasl = std::fs::read_to_string(broker.dir.join("sasl-bootstrap")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir = "{}"

[api]
listen = "127.0.0.1:0"

[kafka]
"bootstrap.servers" = "{}"
"security.protocol" = "SASL_PLAINTEXT"
"sasl.mechanism" = "PLAIN"
"sasl.username" = "app"
"sasl.password" = "app-secret"

[[pipeline]]
name = "acl"
inputs = ["acl-in"]
outputs = ["acl-out"]
guarantee = "exactly-once"
"#,
            dir.path().join("state").display(),
            sasl.trim()
        ),
    )
    .unwrap();
    let mut run = support::KillOnDrop(
        support::sluice()
            .args(["run", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = support::wait_for_exit(&mut run, Duration::from_secs(60))
        .expect("sluice run still running 60 s after start: it should have refused to start");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut run.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    for expected in [
        "exactly-once: the broker refused transactional.id `sluice-acl-",
        "WRITE and DESCRIBE on the transactional id",
        "Transactional Id authorization failed",
    ] {
        assert!(
            stderr.contains(expected),
            "{expected:?} missing from:\n{stderr}"
        );
    }
}

/// A transaction of another producer that holds offsets for Sluice's group keeps the group's
/// committed offsets from a read_committed member (the broker answers "unstable" until it
/// ends). Sluice says so after 20 s, by partition, instead of sitting silent, and reads on
/// once the transaction ends.
#[test]
fn a_member_kept_from_its_committed_offsets_by_an_open_transaction_says_so_then_reads_on() {
    let (input, output) = (unique("eos-wait-in"), unique("eos-wait-out"));
    create_topic(&input, 1);
    create_topic(&output, 1);
    let pipeline = unique("eos-wait");
    let group = format!("sluice-{pipeline}");

    // The open transaction: it commits the group's offset for the input, and stays open.
    let holder: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("transactional.id", unique("eos-wait-holder"))
        .set("transaction.timeout.ms", "60000")
        .create()
        .unwrap();
    holder.init_transactions(Duration::from_secs(30)).unwrap();
    holder.begin_transaction().unwrap();
    let group_consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut offsets = rdkafka::TopicPartitionList::new();
    offsets
        .add_partition_offset(&input, 0, rdkafka::Offset::Offset(0))
        .unwrap();
    holder
        .send_offsets_to_transaction(
            &offsets,
            &group_consumer.group_metadata().unwrap(),
            Duration::from_secs(30),
        )
        .unwrap();

    let values: Vec<String> = (0..100).map(|id| format!(r#"{{"id": {id}}}"#)).collect();
    support::kafka::produce(&input, &values);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"[[pipeline]]
name = "{pipeline}"
inputs = ["{input}"]
outputs = ["{output}"]
guarantee = "exactly-once"

[[pipeline.transform]]
module = "{}"
"#,
            wasm("test_guest").display()
        ),
    );
    let sluice = Sluice::start(&config);
    sluice.wait_until(
        "the report of the partition waiting for its committed offset",
        Duration::from_secs(90),
        || sluice.log().contains("event=\"committed_offset_wait\""),
    );
    let log = sluice.log();
    let report = log
        .lines()
        .find(|l| l.contains("committed_offset_wait"))
        .unwrap();
    assert!(
        report.contains(&format!("topic=\"{input}\" partition=0"))
            && report.contains("a transaction holding offsets for the group is still open"),
        "{report}"
    );
    assert_eq!(written(&output), 0, "read before its committed offset came");

    // A call that times out is to be called again (librdkafka's advice).
    let aborting = Instant::now();
    while let Err(e) = holder.abort_transaction(Duration::from_secs(10)) {
        assert!(
            matches!(&e, KafkaError::Transaction(t) if t.is_retriable())
                && aborting.elapsed() < Duration::from_secs(60),
            "cannot abort the test's transaction: {e}"
        );
    }
    sluice.wait_until(
        "every input in the output once the transaction ended",
        Duration::from_secs(60),
        || read_ids(&[&output], "read_committed").len() == values.len(),
    );
}
