//! A guest for engine and pipeline tests. Its behaviour is chosen by config so that one build
//! serves every test:
//!
//! - every record is copied to the output unchanged (the no-op used by the boundary benchmark);
//! - `route_field = F`: a JSON value's field `F` names the output topic;
//! - `fail_on = S`: a record whose value contains `S` is a per-record error;
//! - `panic_on`, `loop_on`, `grow_on = S`: a record whose value contains `S` panics, spins forever,
//!   or allocates without bound, to exercise traps, the CPU budget and the memory cap;
//! - `init_error = M`: `init` fails with message `M`;
//! - `log = true`: logs one line per batch through the host.

use sluice_sdk::{Config, Error, Record, Transform, Writer};

struct TestGuest {
    route_field: Option<String>,
    fail_on: Option<String>,
    panic_on: Option<String>,
    loop_on: Option<String>,
    grow_on: Option<String>,
    log: bool,
    hoard: Vec<Vec<u8>>,
}

fn contains(value: Option<&[u8]>, needle: &Option<String>) -> bool {
    match (value, needle) {
        (Some(v), Some(n)) => v.windows(n.len()).any(|w| w == n.as_bytes()),
        _ => false,
    }
}

impl Transform for TestGuest {
    fn init(config: &Config) -> Result<Self, Error> {
        config.allow_only(&[
            "route_field",
            "fail_on",
            "panic_on",
            "loop_on",
            "grow_on",
            "init_error",
            "log",
        ])?;
        if let Some(message) = config.get("init_error") {
            return Err(Error::new(message));
        }
        let get = |k: &str| config.get(k).map(str::to_string);
        Ok(TestGuest {
            route_field: get("route_field"),
            fail_on: get("fail_on"),
            panic_on: get("panic_on"),
            loop_on: get("loop_on"),
            grow_on: get("grow_on"),
            log: config.parse::<bool>("log")?.unwrap_or(false),
            hoard: Vec::new(),
        })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Writer<'_>) -> Result<(), Error> {
        if self.log && record.offset % 1000 == 0 {
            sluice_sdk::info!("record at offset {}", record.offset);
        }
        if contains(record.value, &self.fail_on) {
            return Err(Error::new(format!(
                "rejected record at offset {}",
                record.offset
            )));
        }
        if contains(record.value, &self.panic_on) {
            panic!("guest panicked on purpose at offset {}", record.offset);
        }
        if contains(record.value, &self.loop_on) {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        if contains(record.value, &self.grow_on) {
            loop {
                self.hoard.push(vec![1u8; 1 << 20]);
            }
        }
        match &self.route_field {
            Some(field) => {
                let value: serde_json::Value = record.json()?;
                let topic = value[field.as_str()].as_str().ok_or_else(|| {
                    Error::new(format!("field `{field}` is missing or not a string"))
                })?;
                out.write_to(topic, record.value.unwrap_or_default())
            }
            None => match record.value {
                Some(value) => out.write(value),
                None => out.write_record(sluice_sdk::OutputRecord::new(None)),
            },
        }
    }
}

sluice_sdk::export!(TestGuest);
