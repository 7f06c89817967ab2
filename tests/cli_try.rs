//! `sluice try`: the seed's sample lines through the real tz normaliser component.

mod support;

use support::{data, sluice, text, try_with_stdin, wasm};

#[test]
fn seed_lines_come_out_in_the_seed_shape() {
    let tz = wasm("tz_normaliser");
    let input = data("seed-000.jsonl");
    let out = sluice()
        .arg("try")
        .arg(&tz)
        .arg("--input")
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let expected = std::fs::read_to_string(data("seed-000.expected.jsonl")).unwrap();
    assert_eq!(text(&out.stdout), expected);
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn stdin_works_and_small_batches_keep_order() {
    let tz = wasm("tz_normaliser");
    let input = std::fs::read_to_string(data("seed-000.jsonl")).unwrap();
    let out = try_with_stdin(&[tz.to_str().unwrap(), "--batch-size", "4"], &input);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        std::fs::read_to_string(data("seed-000.expected.jsonl")).unwrap()
    );
}

#[test]
fn failed_lines_are_reported_by_number_and_the_rest_still_flows() {
    let tz = wasm("tz_normaliser");
    let input = "{\"date\": \"2024-02-05 10:01:52.884548 -0500\", \"message\": \"0\"}\n\
                 \n\
                 {\"date\": \"nonsense\", \"message\": \"1\"}\n\
                 not json\n\
                 {\"date\": \"2024-02-05 16:02:34.934749 +0100\", \"message\": \"2\"}\n";
    let out = try_with_stdin(&[tz.to_str().unwrap()], input);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "{\"timestamp\":1707145312884.548,\"message\":\"0\"}\n{\"timestamp\":1707145354934.749,\"message\":\"2\"}\n"
    );
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with("line 3: field `date`: cannot parse `nonsense`"),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("line 4: value is not valid JSON"),
        "{stderr}"
    );
}

#[test]
fn config_and_envelope() {
    let tz = wasm("tz_normaliser");
    let line = "{\"date\": \"2024-02-05 10:01:52.884548 -0500\"}\n";
    let out = try_with_stdin(
        &[
            tz.to_str().unwrap(),
            "--config",
            "unit=s",
            "-c",
            "output_field=ts",
            "--envelope",
        ],
        line,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let envelope: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        envelope,
        serde_json::json!({"topic": null, "key": null, "headers": [], "timestamp": null, "value": "{\"ts\":1707145312.884548}"})
    );
}

#[test]
fn refused_modules_and_configs_exit_2_with_the_reason() {
    let tz = wasm("tz_normaliser");
    let out = try_with_stdin(
        &[tz.to_str().unwrap(), "--config", "timezone=Mars/Olympus"],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown IANA time zone `Mars/Olympus`"),
        "{}",
        text(&out.stderr)
    );

    let not_wasm = data("seed-000.jsonl");
    let out = try_with_stdin(&[not_wasm.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not a WebAssembly file"),
        "{}",
        text(&out.stderr)
    );

    let out = try_with_stdin(&["/nonexistent.wasm"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot read the file"),
        "{}",
        text(&out.stderr)
    );

    let out = try_with_stdin(&[tz.to_str().unwrap(), "--config", "novalue"], "");
    assert_eq!(out.status.code(), Some(2), "clap usage errors exit 2");
    assert!(text(&out.stderr).contains("expected KEY=VALUE, got `novalue`"));
}

#[test]
fn a_panicking_record_is_reported_and_neighbours_pass() {
    let guest = wasm("test_guest");
    let out = try_with_stdin(
        &[guest.to_str().unwrap(), "-c", "panic_on=boom"],
        "a\nboom\nc\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "a\nc\n");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("line 2: transform panicked:")
            && stderr.contains("guest panicked on purpose"),
        "{stderr}"
    );
}

#[test]
fn the_enricher_joins_the_seed_orders_with_a_table_file() {
    let out = sluice()
        .arg("try")
        .arg(wasm("enricher"))
        .arg("--table")
        .arg(format!(
            "customers={}",
            data("seed-004-customers.jsonl").display()
        ))
        .args([
            "-c",
            "table=customers",
            "-c",
            "key_field=customer_id",
            "-c",
            "fields=name:customer_name,age:customer_age",
        ])
        .arg("--input")
        .arg(data("seed-004-orders.jsonl"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        concat!(
            r#"{"customer_id":"2","order_id":"13","price":50.50,"currency":"usd","ts":"2020-04-03T11:20:00","customer_name":"bill","customer_age":51}"#,
            "\n",
            r#"{"customer_id":"7","order_id":"29","price":15.00,"currency":"aud","ts":"2020-04-02T12:36:00","customer_name":"sue","customer_age":25}"#,
            "\n",
            r#"{"customer_id":"5","order_id":"17","price":25.25,"currency":"eur","ts":"2020-04-02T17:22:00","customer_name":"fred","customer_age":34}"#,
            "\n",
            r#"{"customer_id":"5","order_id":"15","price":13.75,"currency":"usd","ts":"2020-04-03T02:55:00","customer_name":"fred","customer_age":34}"#,
            "\n",
            r#"{"customer_id":"7","order_id":"22","price":29.71,"currency":"aud","ts":"2020-04-04T00:12:00","customer_name":"sue","customer_age":25}"#,
            "\n",
        )
    );
}

#[test]
fn missing_tables_and_bad_table_files_are_named() {
    // Without --table, every record fails with the lookup's error, and the rest still flows.
    let out = try_with_stdin(
        &[
            wasm("enricher").to_str().unwrap(),
            "-c",
            "table=customers",
            "-c",
            "key_field=customer_id",
        ],
        "{\"customer_id\": \"5\"}\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("declares no table named `customers`"),
        "{}",
        text(&out.stderr)
    );

    let out = try_with_stdin(
        &[
            wasm("enricher").to_str().unwrap(),
            "--table",
            "customers=/nonexistent.jsonl",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("table `customers`: cannot read /nonexistent.jsonl"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_missing_input_file_exits_2_not_as_a_failed_record() {
    let out = sluice()
        .arg("try")
        .arg(wasm("tz_normaliser"))
        .args(["--input", "/nonexistent/records.jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--input /nonexistent/records.jsonl: No such file"),
        "{}",
        text(&out.stderr)
    );
}

/// `sluice run --check`: `-f` names the file (`-c` is a transform's KEY=VALUE everywhere), and
/// librdkafka's refusals of properties are found without connecting.
#[test]
fn run_check_takes_the_file_as_f_and_names_refused_kafka_properties() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    let pipeline = format!(
        "[[pipeline]]\nname = \"p\"\ninputs = [\"a\"]\noutputs = [\"b\"]\n[[pipeline.transform]]\nmodule = {:?}\n",
        wasm("test_guest")
    );
    std::fs::write(&config, &pipeline).unwrap();
    let check = |flag: &str| {
        sluice()
            .args(["run", flag])
            .arg(&config)
            .arg("--check")
            .output()
            .unwrap()
    };
    let ok = check("-f");
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert_eq!(check("-c").status.code(), Some(2), "-c is not the file");

    let misspelt = format!("[kafka]\n\"linger.msec\" = 5\n{pipeline}");
    std::fs::write(&config, misspelt).unwrap();
    let out = check("--config");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("linger.msec"),
        "{}",
        text(&out.stderr)
    );
    let gssapi = format!(
        "[kafka]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanisms\" = \"GSSAPI\"\n{pipeline}"
    );
    std::fs::write(&config, gssapi).unwrap();
    let out = check("--config");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("GSSAPI"),
        "{}",
        text(&out.stderr)
    );

    // What `sluice run` refuses at start, --check refuses with the same words: a state_dir
    // that is a file, an empty group_id, a module file whose name is not a module name.
    let refused = |file: String, expected: &str| {
        std::fs::write(&config, file).unwrap();
        let out = check("--config");
        assert_eq!(out.status.code(), Some(1), "{expected}");
        assert!(
            text(&out.stderr).contains(expected),
            "{}",
            text(&out.stderr)
        );
    };
    std::fs::write(dir.path().join("a-file"), "").unwrap();
    refused(format!("state_dir = \"a-file\"\n{pipeline}"), "state_dir: ");
    refused(
        pipeline.replace("outputs", "group_id = \"\"\noutputs"),
        "pipeline[0] (p).group_id: is empty",
    );
    let odd_name = dir.path().join("odd name.wasm");
    std::fs::copy(wasm("test_guest"), &odd_name).unwrap();
    refused(
        pipeline.replace(
            &format!("{:?}", wasm("test_guest")),
            &format!("{odd_name:?}"),
        ),
        "module name `odd name`",
    );
}
