//! Engine tests against real guests built by `make wasm`, including deliberately hostile ones.

use super::*;
use std::path::PathBuf;

/// The bytes of a guest built for wasm32-wasip2 (`make wasm`).
pub(crate) fn guest_bytes(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("SLUICE_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release")
        });
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the guests first with `make wasm`",
            path.display()
        )
    })
}

fn engine(limits: Limits) -> Engine {
    Engine::new(limits).unwrap()
}

fn test_guest(engine: &Engine, config: &[(&str, &str)]) -> Instance {
    let module = engine.load(&guest_bytes("test_guest")).unwrap();
    let config: Vec<(String, String)> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    engine
        .instantiate(&module, "test_guest", &config, &Tables::default())
        .unwrap()
}

fn batch(values: &[&str]) -> InputBatchBuilder {
    let mut b = InputBatchBuilder::new("in", 0);
    for (i, v) in values.iter().enumerate() {
        b.push(
            i as i64,
            Some(1_000 + i as i64),
            Some(format!("k{i}").as_bytes()),
            Some(v.as_bytes()),
            [("h", Some(&b"v"[..]))],
        );
    }
    b
}

fn values(p: &Processed) -> Vec<(usize, String)> {
    p.outputs()
        .map(|o| {
            (
                o.input(),
                String::from_utf8(o.value().unwrap().to_vec()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn passthrough_keeps_values_keys_headers_and_timestamps() {
    let engine = engine(Limits::default());
    let mut instance = test_guest(&engine, &[]);
    let b = batch(&["a", "b", "c"]);
    let p = instance.process(b.batch()).unwrap();
    assert_eq!(
        values(&p),
        vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]
    );
    let first = p.outputs().next().unwrap();
    assert_eq!(first.key(), Some(&b"k0"[..]));
    assert_eq!(first.timestamp(), Some(1_000));
    assert_eq!(
        first.headers().collect::<Vec<_>>(),
        vec![("h", Some(&b"v"[..]))]
    );
    assert_eq!(first.topic(), None);
    assert!(p.failures().is_empty());
}

#[test]
fn a_component_without_columnar_gets_and_returns_the_record_layout() {
    let engine = engine(Limits::default());
    let plain = engine.load(&guest_bytes("plain_guest")).unwrap();
    assert!(!plain.is_columnar(), "plain_guest exports `transform` only");
    let sdk = engine.load(&guest_bytes("test_guest")).unwrap();
    assert!(sdk.is_columnar(), "sluice-sdk exports `columnar` too");
    let mut instance = engine
        .instantiate(&plain, "plain_guest", &[], &Tables::default())
        .unwrap();
    let mut b = batch(&["a", "fail", "c"]);
    b.push(3, None, None, None, []);
    let p = instance.process(b.batch()).unwrap();
    let outputs: Vec<_> = p.outputs().collect();
    assert_eq!(
        outputs[..2]
            .iter()
            .map(|o| (o.input(), o.value()))
            .collect::<Vec<_>>(),
        vec![(0, Some(&b"A"[..])), (2, Some(&b"C"[..]))]
    );
    assert_eq!(
        (outputs[1].key(), outputs[1].timestamp()),
        (Some(&b"k2"[..]), Some(1_002))
    );
    assert_eq!(
        outputs[1].headers().collect::<Vec<_>>(),
        vec![("h", Some(&b"v"[..]))]
    );
    // A null key, value and timestamp stay null through the record layout.
    assert_eq!(
        (outputs[2].input(), outputs[2].key(), outputs[2].value()),
        (3, None, None)
    );
    assert_eq!(outputs[2].timestamp(), None);
    assert_eq!(
        p.failures(),
        &[Failure {
            input: 1,
            kind: FailureKind::Rejected,
            message: "the value is `fail`".into()
        }]
    );
}

#[test]
fn a_rejected_record_fails_alone() {
    let engine = engine(Limits::default());
    let mut instance = test_guest(&engine, &[("fail_on", "bad")]);
    let p = instance
        .process(batch(&["ok", "bad", "fine"]).batch())
        .unwrap();
    assert_eq!(values(&p), vec![(0, "ok".into()), (2, "fine".into())]);
    assert_eq!(
        p.failures(),
        &[Failure {
            input: 1,
            kind: FailureKind::Rejected,
            message: "rejected record at offset 1".into()
        }]
    );
    assert_eq!(instance.restarts(), 0);
}

#[test]
fn a_panic_discards_the_instance_and_only_the_culprit_fails() {
    let engine = engine(Limits::default());
    let mut instance = test_guest(&engine, &[("panic_on", "boom")]);
    let p = instance
        .process(batch(&["a", "b", "boom", "d"]).batch())
        .unwrap();
    assert_eq!(
        values(&p),
        vec![(0, "a".into()), (1, "b".into()), (3, "d".into())]
    );
    let f = &p.failures()[0];
    assert_eq!((f.input, f.kind), (2, FailureKind::Panic));
    assert!(
        f.message.contains("guest panicked on purpose at offset 2"),
        "{}",
        f.message
    );
    // Once for the batch, once more when the record trapped on its own.
    assert_eq!(instance.restarts(), 2);
    // The fresh instance keeps working.
    let p = instance.process(batch(&["x"]).batch()).unwrap();
    assert_eq!(values(&p), vec![(0, "x".into())]);
}

#[test]
fn an_infinite_loop_is_cut_by_the_cpu_budget() {
    let limits = Limits {
        cpu_budget: Duration::from_millis(200),
        ..Limits::default()
    };
    let engine = engine(limits);
    let mut instance = test_guest(&engine, &[("loop_on", "spin")]);
    let started = std::time::Instant::now();
    let p = instance.process(batch(&["a", "spin"]).batch()).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "budget not enforced: {:?}",
        started.elapsed()
    );
    assert_eq!(values(&p), vec![(0, "a".into())]);
    let f = &p.failures()[0];
    assert_eq!((f.input, f.kind), (1, FailureKind::CpuBudget));
    assert!(f.message.contains("more than 200 ms"), "{}", f.message);
}

#[test]
fn a_memory_bomb_is_stopped_by_the_cap() {
    let limits = Limits {
        memory_bytes: 32 << 20,
        ..Limits::default()
    };
    let engine = engine(limits);
    let mut instance = test_guest(&engine, &[("grow_on", "hog")]);
    let p = instance.process(batch(&["hog", "b"]).batch()).unwrap();
    assert_eq!(values(&p), vec![(1, "b".into())]);
    let f = &p.failures()[0];
    assert_eq!((f.input, f.kind), (0, FailureKind::MemoryLimit));
    assert!(
        f.message.contains("over the cap of 33554432 bytes"),
        "{}",
        f.message
    );
}

#[test]
fn init_errors_refuse_the_instance_with_the_guests_message() {
    let engine = engine(Limits::default());
    let module = engine.load(&guest_bytes("test_guest")).unwrap();
    let config = [("init_error".to_string(), "key `x` is wrong".to_string())];
    let err = engine
        .instantiate(&module, "t", &config, &Tables::default())
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "the transform refused its configuration: key `x` is wrong"
    );
    let config = [("nope".to_string(), "1".to_string())];
    let err = engine
        .instantiate(&module, "t", &config, &Tables::default())
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("unknown config key `nope`"),
        "{err}"
    );
}

#[test]
fn loading_names_what_is_wrong() {
    let engine = engine(Limits::default());
    let load = |bytes: &[u8]| {
        engine
            .load(bytes)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(load(b"hello world").starts_with("not a WebAssembly file"));
    assert!(
        load(&wat::parse_str("(module)").unwrap())
            .starts_with("this is a core WebAssembly module, not a component")
    );
    assert!(
        load(&wat::parse_str("(component)").unwrap())
            .contains("does not export `sluice:transform/transform@0.1.0`")
    );
    assert!(load(&wat::parse_str("(component)").unwrap()).contains("it exports: nothing"));

    let other_version = r#"(component
        (core module $m (func (export "f")))
        (core instance $i (instantiate $m))
        (func $f (canon lift (core func $i "f")))
        (instance $inst (export "f" (func $f)))
        (export "sluice:transform/transform@0.2.0" (instance $inst)))"#;
    let err = load(&wat::parse_str(other_version).unwrap());
    assert!(err.starts_with("the component targets sluice:transform/transform@0.2.0, but this runtime implements sluice:transform@0.1.0"), "{err}");

    // Built against the next contract as a whole: its imports are of that version too, and
    // the version is what is reported, not that they are not granted.
    let whole_other_version = other_version.replacen(
        "(core module",
        r#"(import "sluice:transform/log@0.2.0" (instance)) (core module"#,
        1,
    );
    let err = load(&wat::parse_str(&whole_other_version).unwrap());
    assert!(
        err.starts_with("the component targets sluice:transform/transform@0.2.0"),
        "{err}"
    );

    let wrong_shape = other_version.replace("@0.2.0", "@0.1.0");
    let err = load(&wat::parse_str(&wrong_shape).unwrap());
    assert!(
        err.starts_with(
            "the component's `sluice:transform/transform@0.1.0` export does not match the contract"
        ),
        "{err}"
    );

    let greedy = r#"(component (import "evil:net/socket" (instance)))"#;
    assert_eq!(
        load(&wat::parse_str(greedy).unwrap()),
        "the component imports `evil:net/socket`, which Sluice does not grant to transforms"
    );
    // WASI, but not a part the host links (a JavaScript component keeps HTTP unless told not to).
    let http = r#"(component (import "wasi:http/types@0.2.3" (instance)))"#;
    assert_eq!(
        load(&wat::parse_str(http).unwrap()),
        "the component imports `wasi:http/types@0.2.3`, which Sluice does not grant to transforms"
    );

    let mut truncated = guest_bytes("test_guest");
    truncated.truncate(truncated.len() / 2);
    assert!(load(&truncated).starts_with("not a valid WebAssembly component"));
}

#[test]
fn the_tz_normaliser_loads_and_hashes() {
    let engine = engine(Limits::default());
    let bytes = guest_bytes("tz_normaliser");
    let module = engine.load(&bytes).unwrap();
    assert_eq!(module.size, bytes.len());
    assert_eq!(module.sha256.len(), 64);
    let mut instance = engine
        .instantiate(&module, "tz", &[], &Tables::default())
        .unwrap();
    let p = instance
        .process(
            batch(&[r#"{"date": "2024-02-05 10:01:52.884548 -0500", "message": "0"}"#]).batch(),
        )
        .unwrap();
    assert_eq!(
        values(&p),
        vec![(0, r#"{"timestamp":1707145312884.548,"message":"0"}"#.into())]
    );
}

#[test]
fn a_stateful_component_keeps_state_across_batches_and_its_timers_fire_after_the_batch() {
    let engine = engine(Limits::default());
    let plain = engine.load(&guest_bytes("tz_normaliser")).unwrap();
    assert!(!plain.is_stateful());
    let module = engine.load(&guest_bytes("windowed_aggregate")).unwrap();
    assert!(module.is_stateful());
    let config: Vec<(String, String)> = [
        ("value", "n"),
        ("window", "10s"),
        ("aggregations", "count,sum"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut instance = engine
        .instantiate(&module, "agg", &config, &Tables::default())
        .unwrap();
    let at = |records: &[(i64, &str)]| {
        let mut b = InputBatchBuilder::new("in", 0);
        for (i, (timestamp, value)) in records.iter().enumerate() {
            b.push(i as i64, Some(*timestamp), None, Some(value.as_bytes()), []);
        }
        b
    };
    // Event time is the record timestamp: nothing closes within the first window.
    let first = instance
        .process(at(&[(1_000, r#"{"n":1}"#), (2_000, r#"{"n":2}"#)]).batch())
        .unwrap();
    assert!(values(&first).is_empty());
    // The next batch moves stream time past 10 s: the window closes after it, its result
    // attributed to the batch's last record.
    let second = instance
        .process(at(&[(3_000, r#"{"n":4}"#), (10_500, r#"{"n":8}"#)]).batch())
        .unwrap();
    assert_eq!(
        values(&second),
        vec![(
            1,
            r#"{"key":null,"window_start":0,"window_end":10000,"count":3,"sum":7}"#.to_string()
        )]
    );
    // The end of the input closes the rest.
    let rest = instance.finish().unwrap();
    assert_eq!(
        values(&rest),
        vec![(
            0,
            r#"{"key":null,"window_start":10000,"window_end":20000,"count":1,"sum":8}"#.to_string()
        )]
    );
}

#[test]
fn a_component_seen_before_is_loaded_from_the_compiled_cache_and_a_bad_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cached = || engine(Limits::default()).with_compiled_cache(dir.path().to_path_buf());
    let bytes = guest_bytes("test_guest");
    let first = cached().load(&bytes).unwrap();
    let files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one compiled file: {files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        name.starts_with(&first.sha256) && name.ends_with(".cwasm"),
        "{name}"
    );

    // Another engine (as after a restart) loads it from the file and runs it.
    let run = |engine: &Engine| {
        let module = engine.load(&bytes).unwrap();
        let mut instance = engine
            .instantiate(&module, "test_guest", &[], &Tables::default())
            .unwrap();
        let processed = instance.process(batch(&["a", "b"]).batch()).unwrap();
        assert_eq!(values(&processed), [(0, "a".into()), (1, "b".into())]);
    };
    let compiled = std::fs::read(&files[0]).unwrap();
    run(&cached());

    // A damaged file is not loaded: the component is compiled again and the file rewritten.
    std::fs::write(&files[0], b"not machine code").unwrap();
    run(&cached());
    assert_eq!(std::fs::read(&files[0]).unwrap(), compiled);
}
