//! The performance targets: each printed with its value and met or missed, and kept with the
//! run's figures in `bench/results/latest.json` (one section per benchmark command, so that
//! `make bench` and `make bench-peers` each replace only their own).

use anyhow::{Context, Result};
use std::path::PathBuf;

/// One figure against its target.
pub struct Target {
    /// What is measured, e.g. `tz normaliser Wasm / native`.
    pub figure: String,
    /// The value measured.
    pub value: f64,
    /// The target, as written in the issue, e.g. `at least 0.7`.
    pub target: String,
    /// Whether the value meets it.
    pub met: bool,
}

impl Target {
    /// `figure` is met at `min` or more.
    pub fn at_least(figure: &str, value: f64, min: f64) -> Target {
        Target {
            figure: figure.into(),
            value,
            target: format!("at least {min}"),
            met: value >= min,
        }
    }

    /// `figure` is met at `max` or less.
    pub fn at_most(figure: &str, value: f64, max: f64) -> Target {
        Target {
            figure: figure.into(),
            value,
            target: format!("at most {max}"),
            met: value <= max,
        }
    }

    /// A yes-or-no condition.
    pub fn holds(figure: &str, holds: bool) -> Target {
        Target {
            figure: figure.into(),
            value: if holds { 1.0 } else { 0.0 },
            target: "holds".into(),
            met: holds,
        }
    }
}

/// Prints `targets` as a table.
pub fn print(targets: &[Target]) {
    println!("\nTargets");
    let width = targets.iter().map(|t| t.figure.len()).max().unwrap_or(0);
    for t in targets {
        println!(
            "    {:<width$}  {:>10}  {:<14}  {}",
            t.figure,
            format!("{:.2}", t.value),
            t.target,
            if t.met { "met" } else { "MISSED" }
        );
    }
}

/// Where the latest figures are kept.
pub fn latest_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results/latest.json")
}

/// Replaces `section` of `bench/results/latest.json` with `results` and `targets`, stamped with
/// the time and the machine.
pub fn save(section: &str, results: &serde_json::Value, targets: &[Target]) -> Result<PathBuf> {
    let path = latest_path();
    let mut latest: serde_json::Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    let targets: Vec<serde_json::Value> = targets
        .iter()
        .map(|t| {
            serde_json::json!({
                "figure": t.figure,
                "value": (t.value * 1000.0).round() / 1000.0,
                "target": t.target,
                "met": t.met,
            })
        })
        .collect();
    latest[section] = serde_json::json!({
        "run_at": now_utc(),
        "machine": machine(),
        "targets": targets,
        "results": results,
    });
    std::fs::create_dir_all(path.parent().expect("a folder"))?;
    std::fs::write(&path, serde_json::to_string_pretty(&latest)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn now_utc() -> String {
    let output = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output();
    output
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Cores, memory and CPU model, from /proc.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kb: f64 = m.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb / 1024.0 / 1024.0)
        })
        .unwrap_or(0.0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            let line = c.lines().find(|l| l.starts_with("model name"))?;
            Some(line.split(':').nth(1)?.trim().to_string())
        })
        .unwrap_or_default();
    format!("{cores} cores, {memory_gib:.1} GiB, {model}")
}
