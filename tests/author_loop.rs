//! The transform author's loop, as the README tells a newcomer: scaffold a transform into a
//! folder outside the repository, build it with `sluice transform build`, create a pipeline
//! for it through the API (`sluice apply`) on a runtime started without any, see its outputs
//! on a real broker, change the source, and see `sluice dev --watch` swap the new version in.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::kafka::{Sluice, consume_values, create_topic, produce, unique, write_config};
use support::{KillOnDrop, repo, sluice, text};

/// `sluice ARGS...` in `dir`, building into the shared scaffold target folder.
fn sluice_in(dir: &Path, args: &[&str]) -> Command {
    let mut command = sluice();
    command
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", repo().join("target/scaffold"));
    command
}

/// What slot 0 of `pipeline` runs: module and version.
fn slot(runtime: &Sluice, pipeline: &str) -> (String, u64) {
    let (_, body) = runtime.http_get(&format!("/api/v1/pipelines/{pipeline}"));
    let p: Value = serde_json::from_str(&body).unwrap_or_default();
    let s = &p["slots"][0];
    (
        s["module"].as_str().unwrap_or_default().to_string(),
        s["version"].as_u64().unwrap_or_default(),
    )
}

#[test]
fn a_scaffolded_transform_is_built_deployed_and_swapped_on_save() {
    let work = tempfile::tempdir().unwrap();
    let out = sluice_in(work.path(), &["transform", "new", "rename-fields"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let crate_dir = work.path().join("rename-fields");

    let built = sluice_in(&crate_dir, &["transform", "build"])
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", text(&built.stderr));
    let line = text(&built.stdout);
    let path = line
        .split_once(": ")
        .and_then(|(_, rest)| rest.split(" (").next())
        .unwrap_or_default()
        .to_string();
    assert!(path.ends_with("rename_fields.wasm"), "{line}");
    assert!(std::fs::metadata(&path).unwrap().len() > 0, "{line}");

    // A runtime without pipelines; one is created for the transform through its API.
    let (input, output) = (unique("author-in"), unique("author-out"));
    create_topic(&input, 1);
    create_topic(&output, 1);
    let runtime = Sluice::start(&write_config(work.path(), ""));
    runtime.wait_until("ready", Duration::from_secs(60), || {
        runtime.http_get("/readyz").0 == 200
    });
    let api = format!("http://{}", runtime.api_address());
    let pipelines = work.path().join("pipelines.toml");
    std::fs::write(
        &pipelines,
        format!(
            "[[pipeline]]\nname = \"newcomer\"\ninputs = [\"{input}\"]\noutputs = [\"{output}\"]\n\n\
             [[pipeline.transform]]\nmodule = {path:?}\nconfig = {{ rename = \"msg:message\" }}\n"
        ),
    )
    .unwrap();
    let apply = |extra: &[&str]| {
        let mut args = vec!["apply", "-f", pipelines.to_str().unwrap(), "--api", &api];
        args.extend(extra);
        let out = sluice_in(work.path(), &args).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let planned = apply(&["--dry-run"]);
    assert!(
        planned.contains("+ newcomer (create)") && planned.contains("nothing changed"),
        "{planned}"
    );
    assert_eq!(runtime.http_get("/api/v1/pipelines/newcomer").0, 404);
    apply(&[]);
    assert_eq!(slot(&runtime, "newcomer"), ("rename_fields".into(), 1));
    produce(&input, &[r#"{"id": 6, "msg": "zeroth"}"#.to_string()]);
    runtime.wait_until(
        "the created pipeline's output",
        Duration::from_secs(60),
        || {
            consume_values(&output)
                .iter()
                .any(|v| v == r#"{"id":6,"message":"zeroth"}"#)
        },
    );
    assert!(apply(&[]).contains("nothing to do"), "applied twice");

    // `sluice dev` once: built, the sample tried, deployed with transform.toml's config.
    let dev = sluice_in(&crate_dir, &["dev", "newcomer", "--api", &api])
        .output()
        .unwrap();
    assert!(dev.status.success(), "{}", text(&dev.stderr));
    let shown = text(&dev.stdout);
    assert!(
        shown.contains(r#"{"id":1,"message":"hi","source":"web"}"#),
        "the sample's outputs are shown: {shown}"
    );
    assert_eq!(slot(&runtime, "newcomer"), ("rename-fields".into(), 1));
    produce(&input, &[r#"{"id": 7, "msg": "first"}"#.to_string()]);
    runtime.wait_until("the transform's output", Duration::from_secs(30), || {
        consume_values(&output)
            .iter()
            .any(|v| v == r#"{"id":7,"message":"first","source":"web"}"#)
    });

    // `sluice dev --watch`, then a change to the source: the new version runs.
    let _watch = KillOnDrop(
        sluice_in(&crate_dir, &["dev", "newcomer", "--watch", "--api", &api])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lib = crate_dir.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let edited = source.replacen(
        "out.write_json(&renamed)",
        "renamed.insert(\"edited\".into(), true.into());\n        out.write_json(&renamed)",
        1,
    );
    assert_ne!(source, edited, "the scaffold's source changed shape");
    std::fs::write(&lib, edited).unwrap();
    runtime.wait_until(
        "version 2 deployed by sluice dev --watch",
        Duration::from_secs(180),
        || slot(&runtime, "newcomer") == ("rename-fields".into(), 2),
    );
    produce(&input, &[r#"{"id": 8, "msg": "second"}"#.to_string()]);
    runtime.wait_until(
        "the edited transform's output",
        Duration::from_secs(30),
        || {
            consume_values(&output)
                .iter()
                .any(|v| v == r#"{"id":8,"message":"second","source":"web","edited":true}"#)
        },
    );

    // The transform added once more, as a new last slot: the chain grows, records still flow.
    let added = sluice_in(
        &crate_dir,
        &[
            "transform",
            "deploy",
            "newcomer",
            "--new-slot",
            "--api",
            &api,
        ],
    )
    .output()
    .unwrap();
    assert!(added.status.success(), "{}", text(&added.stderr));
    assert!(
        text(&added.stdout).contains("as slot 1"),
        "{}",
        text(&added.stdout)
    );
    produce(&input, &[r#"{"id": 9, "msg": "third"}"#.to_string()]);
    runtime.wait_until(
        "an output through both slots",
        Duration::from_secs(60),
        || {
            consume_values(&output)
                .iter()
                .any(|v| v.contains(r#""id":9,"message":"third""#))
        },
    );
    runtime.signal("TERM");
}
