//! `sluice try` with the real PII stripper component.

mod support;

use std::process::Output;
use support::{text, wasm};

/// `sluice try pii_stripper.wasm ARGS...` over `stdin`.
fn try_with_stdin(args: &[&str], stdin: &str) -> Output {
    let pii = wasm("pii_stripper");
    let mut all = vec![pii.to_str().unwrap()];
    all.extend_from_slice(args);
    support::try_with_stdin(&all, stdin)
}

/// Emails, phone numbers and a card number, next to ids, prices, dates, epoch times, SKUs,
/// postcodes and UUIDs that must come out as they went in.
const INPUT: &str = r#"{"order_id":1001,"customer":{"name":"Ada","email":"Ada.Lovelace@example.com","phone":"+44 20 7946 0958"},"note":"call (555) 123-4567 or 555.123.4567 after 18:00","card":"4111 1111 1111 1111","total":1234.50,"qty":1.0}
{"sku":"SKU-12345-XL","postcode":"SW1A 1AA","zip":"90210-1234","when":"2020-04-03T11:20:00","at":"2024-02-05 10:01:52.884548 -0500","ts":"1707145312884","ref":"1717145312888","id":"550e8400-e29b-41d4-a716-446655440000","app":"1.2.3","price":"$1,234.56"}
["+33 1 23 45 67 89 and a@b.com", 4111111111111111, {"ip":"10.0.0.1:8080","v6":"2001:db8::1","ssn":"123-45-6789","not_ssn":"666-12-3456"}]
"#;

#[test]
fn default_config_masks_only_the_pii() {
    let out = try_with_stdin(&[], INPUT);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        r#"{"order_id":1001,"customer":{"name":"Ada","email":"[EMAIL]","phone":"[PHONE]"},"note":"call [PHONE] or [PHONE] after 18:00","card":"[CARD]","total":1234.50,"qty":1.0}
{"sku":"SKU-12345-XL","postcode":"SW1A 1AA","zip":"90210-1234","when":"2020-04-03T11:20:00","at":"2024-02-05 10:01:52.884548 -0500","ts":"1707145312884","ref":"1717145312888","id":"550e8400-e29b-41d4-a716-446655440000","app":"1.2.3","price":"$1,234.56"}
["[PHONE] and [EMAIL]",4111111111111111,{"ip":"[IPV4]:8080","v6":"[IPV6]","ssn":"[SSN]","not_ssn":"666-12-3456"}]
"#
    );
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn hashing_is_deterministic_and_depends_on_the_salt() {
    let input = "{\"email\":\"a@b.com\",\"again\":\"A@B.com\",\"phone\":\"+44 (0)20 7946 0958\"}\n";
    let hash = ["--config", "action=hash", "--config", "salt=s"];
    let first = try_with_stdin(&hash, input);
    assert!(first.status.success(), "stderr: {}", text(&first.stderr));
    // python3 -c 'import hmac,hashlib; print(hmac.new(b"s", b"a@b.com", hashlib.sha256).hexdigest()[:16])'
    assert_eq!(
        text(&first.stdout),
        "{\"email\":\"[EMAIL:078760c0aa2f7bee]\",\"again\":\"[EMAIL:078760c0aa2f7bee]\",\"phone\":\"[PHONE:f859f4a76db0234d]\"}\n"
    );
    let second = try_with_stdin(&hash, input);
    assert_eq!(text(&second.stdout), text(&first.stdout));

    let other = try_with_stdin(&["--config", "action=hash", "--config", "salt=t"], input);
    assert!(other.status.success());
    assert_ne!(text(&other.stdout), text(&first.stdout));
    assert!(
        text(&other.stdout).contains("[EMAIL:ee39d518de8c0bc4]"),
        "{}",
        text(&other.stdout)
    );
}

#[test]
fn drop_action_and_field_lists() {
    let input = "{\"id\":7,\"name\":\"Ada\",\"ssn\":\"n/a\",\"note\":\"mail a@b.com\",\"tags\":[\"vip\",\"555-123-4567\"]}\n";
    let out = try_with_stdin(
        &["-c", "action=drop", "-c", "drop=ssn", "-c", "mask=name"],
        input,
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "{\"id\":7,\"name\":\"[REDACTED]\",\"tags\":[\"vip\"]}\n"
    );
}

#[test]
fn a_line_that_is_not_json_fails_alone() {
    let input = "{\"email\":\"a@b.com\"}\nnot json\n\n\"mail c@d.com\"\n{\"broken\":\n";
    let out = try_with_stdin(&[], input);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "{\"email\":\"[EMAIL]\"}\n\"mail [EMAIL]\"\n"
    );
    assert_eq!(
        text(&out.stderr),
        "line 2: value is not valid JSON: expected ident at line 1 column 2\n\
         line 5: value is not valid JSON: EOF while parsing a value at line 1 column 10\n"
    );
}

#[test]
fn bad_configs_are_refused_with_exit_2() {
    let out = try_with_stdin(&["--config", "action=hash"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("config key `salt` is required when action = hash"),
        "{}",
        text(&out.stderr)
    );

    let out = try_with_stdin(&["--config", "emial=false"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown config key `emial`"),
        "{}",
        text(&out.stderr)
    );
}
