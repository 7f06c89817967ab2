//! Transforms written in Python and TypeScript (built by `make polyglot` into target/polyglot)
//! run under the same contract and sandbox as Rust ones: the shipped examples give the Rust
//! transforms' outputs byte for byte, a guest that loops or hogs memory fails only its own
//! record, a component built for another contract version is refused by name, `sluice run` and
//! an upload through the API work unchanged, and `sluice transform new --lang` scaffolds
//! projects that build and pass their own tests.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::kafka::{Sluice, consume_values, create_topic, produce, unique, write_config};
use support::{polyglot, repo, sluice, text, try_with_stdin, wasm};

/// The PII stripper configured to mask e-mail addresses only, as the examples do.
const EMAIL_ONLY: &[&str] = &[
    "phone=false",
    "card=false",
    "ssn=false",
    "ipv4=false",
    "ipv6=false",
];

/// What `sluice try --envelope-in --envelope` makes of `input` with `module`: the outputs, and
/// the numbers of the lines that failed.
fn try_envelopes(module: &Path, config: &[&str], input: &Path) -> (String, Vec<String>) {
    let mut command = sluice();
    command.arg("try").arg(module).arg("--input").arg(input);
    command.args(["--envelope-in", "--envelope"]);
    for entry in config {
        command.args(["-c", entry]);
    }
    let out = command.output().unwrap();
    let stderr = text(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{} could not be tried: {stderr}",
        module.display()
    );
    let failed = (stderr.lines())
        .filter_map(|l| l.strip_prefix("line "))
        .filter_map(|l| l.split(':').next())
        .map(str::to_string)
        .collect();
    (text(&out.stdout), failed)
}

#[test]
fn the_examples_give_the_rust_transforms_outputs_byte_for_byte() {
    let email = support::data("polyglot/email.jsonl");
    let tz = support::data("polyglot/tz.jsonl");
    let cases: Vec<(&str, Vec<&str>, &str, &Path)> = vec![
        ("email_mask_python", vec![], "pii_stripper", &email),
        ("email_mask_typescript", vec![], "pii_stripper", &email),
        ("tz_normaliser_typescript", vec![], "tz_normaliser", &tz),
        (
            "tz_normaliser_typescript",
            vec!["unit=s"],
            "tz_normaliser",
            &tz,
        ),
        (
            "tz_normaliser_typescript",
            vec!["unit=us"],
            "tz_normaliser",
            &tz,
        ),
        (
            "tz_normaliser_typescript",
            vec!["output=rfc3339"],
            "tz_normaliser",
            &tz,
        ),
        (
            "tz_normaliser_typescript",
            vec!["output_field=date"],
            "tz_normaliser",
            &tz,
        ),
    ];
    for (example, config, rust, input) in cases {
        let mut rust_config = config.clone();
        if rust == "pii_stripper" {
            rust_config.extend(EMAIL_ONLY);
        }
        let expected = try_envelopes(&wasm(rust), &rust_config, input);
        let got = try_envelopes(&polyglot(example), &config, input);
        // Both outputs and failures, so the comparison covers both paths.
        assert!(
            expected.0.lines().count() >= 10 && expected.1.len() >= 2,
            "{rust} {config:?}: too few outputs or failures to compare: {expected:?}"
        );
        for (line, (want, have)) in expected.0.lines().zip(got.0.lines()).enumerate() {
            assert_eq!(have, want, "{example} {config:?}: output {}", line + 1);
        }
        assert_eq!(got, expected, "{example} {config:?}");
    }
}

#[test]
fn a_python_or_typescript_guest_that_loops_or_hogs_memory_fails_only_its_own_record() {
    for guest in ["sandbox_python", "sandbox_typescript"] {
        let module = polyglot(guest);
        let out = try_with_stdin(
            &[
                module.to_str().unwrap(),
                "--batch-size",
                "8",
                "--cpu-budget-ms",
                "300",
            ],
            "a\nspin\nb\nhog\nc\n",
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{guest}: {stderr}");
        assert_eq!(text(&out.stdout), "a\nb\nc\n", "{guest}: {stderr}");
        let failed: Vec<&str> = stderr.lines().filter(|l| l.starts_with("line ")).collect();
        assert_eq!(failed.len(), 2, "{guest}: {stderr}");
        assert!(
            failed[0].starts_with("line 2: ") && failed[0].contains("CPU budget exceeded"),
            "{guest}: {stderr}"
        );
        assert!(
            failed[1].starts_with("line 4: ") && failed[1].to_lowercase().contains("memory"),
            "{guest}: {stderr}"
        );
    }
}

#[test]
fn a_component_built_for_another_contract_version_is_refused_by_name() {
    let out = try_with_stdin(&[polyglot("contract_0_2").to_str().unwrap()], "a\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("sluice:transform/transform@0.2.0")
            && stderr.contains("sluice:transform@0.1.0"),
        "{stderr}"
    );
}

#[test]
fn python_and_typescript_transforms_run_in_a_pipeline_and_deploy_through_the_api() {
    let work = tempfile::tempdir().unwrap();
    let (input, output) = (unique("polyglot-in"), unique("polyglot-out"));
    create_topic(&input, 1);
    create_topic(&output, 1);
    let config = write_config(
        work.path(),
        &format!(
            "[[pipeline]]\nname = \"polyglot\"\ninputs = [\"{input}\"]\noutputs = [\"{output}\"]\n\n\
             [[pipeline.transform]]\nmodule = {:?}\n\n[[pipeline.transform]]\nmodule = {:?}\n",
            polyglot("tz_normaliser_typescript"),
            polyglot("email_mask_python"),
        ),
    );
    let runtime = Sluice::start(&config);
    let record = |n: u32| {
        format!(
            r#"{{"date": "2024-02-05 10:01:52.88454{n} -0500", "note": "mail ada{n}@example.com"}}"#
        )
    };
    let expected = |n: u32| format!(r#"{{"timestamp":1707145312884.54{n},"note":"mail [EMAIL]"}}"#);
    produce(&input, &[record(1), record(2)]);
    runtime.wait_until(
        "both records through TypeScript then Python",
        Duration::from_secs(120),
        || consume_values(&output) == [expected(1), expected(2)],
    );

    // The TypeScript e-mail masking uploaded and deployed over the Python one, as the page does.
    let api = format!("http://{}", runtime.api_address());
    let deployed = sluice()
        .args(["deploy", "polyglot"])
        .arg(polyglot("email_mask_typescript"))
        .args(["--slot", "1", "--api", &api])
        .output()
        .unwrap();
    assert!(deployed.status.success(), "{}", text(&deployed.stderr));
    let (_, body) = runtime.http_get("/api/v1/pipelines/polyglot");
    let pipeline: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        pipeline["slots"][1]["module"], "email_mask_typescript",
        "{body}"
    );
    produce(&input, &[record(3)]);
    runtime.wait_until(
        "a record through the deployed module",
        Duration::from_secs(60),
        || consume_values(&output) == [expected(1), expected(2), expected(3)],
    );
    runtime.signal("TERM");
}

/// The PATH with the venv of `make setup-polyglot` first: `python3` is the venv's, with
/// componentize-py, pytest and the SDK.
fn tool_path() -> String {
    let venv = repo().join(".cache/polyglot/venv/bin");
    format!(
        "{}:{}",
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Runs `program ARGS...` in `dir` with the polyglot tools on the PATH; fails with its output.
fn run_in(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("PATH", tool_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} in {}:\n{}\n{}",
        dir.display(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn python_and_typescript_scaffolds_build_and_pass_their_own_tests() {
    let work = tempfile::tempdir().unwrap();
    let sluice_exe = env!("CARGO_BIN_EXE_sluice");
    for (lang, test) in [
        ("python", &["python3", "-m", "pytest", "-q"][..]),
        ("typescript", &["npm", "test", "--silent"][..]),
    ] {
        let name = format!("rename-{lang}");
        run_in(
            work.path(),
            sluice_exe,
            &["transform", "new", &name, "--lang", lang],
        );
        let project = work.path().join(&name);
        if lang == "typescript" {
            // Links the SDK of this checkout, whose tools are installed: nothing is downloaded.
            run_in(
                &project,
                "npm",
                &["install", "--offline", "--no-audit", "--no-fund"],
            );
        }
        run_in(&project, test[0], &test[1..]);
        let built = run_in(&project, sluice_exe, &["transform", "build"]);
        let wasm = built
            .split_once(": ")
            .and_then(|(_, rest)| rest.split(" (").next())
            .unwrap_or_default()
            .to_string();
        let tried = run_in(
            &project,
            sluice_exe,
            &[
                "try",
                &wasm,
                "--input",
                "sample.jsonl",
                "-c",
                "rename=msg:message",
                "-c",
                "add=source:web",
            ],
        );
        assert_eq!(
            tried,
            "{\"id\":1,\"message\":\"hi\",\"source\":\"web\"}\n{\"id\":2,\"message\":\"hello\",\"lang\":\"en\",\"source\":\"web\"}\n",
            "{lang}"
        );
    }
}
