use super::*;
use crate::detect::luhn;
use sluice_sdk::testing;

fn stripper(config: &[(&str, &str)]) -> PiiStripper {
    testing::init::<PiiStripper>(config).expect("valid config")
}

/// Runs one value through the transform: the output value as text (`None` when the record is
/// filtered out), or the error message.
fn run(config: &[(&str, &str)], value: &str) -> Result<Option<String>, String> {
    let mut t = stripper(config);
    run_bytes(&mut t, value.as_bytes())
}

fn run_bytes(t: &mut PiiStripper, value: &[u8]) -> Result<Option<String>, String> {
    testing::process(t, &Record::from_value(value))
        .map(|outs| {
            assert!(outs.len() <= 1);
            outs.first().map(|o| o.value_str().unwrap().to_string())
        })
        .map_err(|e| e.to_string())
}

/// One text through the default config, as a JSON string value.
fn text(config: &[(&str, &str)], text: &str) -> String {
    let value = serde_json::to_string(text).unwrap();
    let out = run(config, &value).unwrap().expect("one output");
    serde_json::from_str(&out).unwrap()
}

fn config_error(config: &[(&str, &str)]) -> String {
    testing::init::<PiiStripper>(config)
        .err()
        .expect("config is refused")
        .to_string()
}

/// Text that must be found, with what the default config makes of it.
const MUST_DETECT: &[(&str, &str)] = &[
    // Email addresses.
    ("a@b.com", "[EMAIL]"),
    (
        "contact me at a@b.com please",
        "contact me at [EMAIL] please",
    ),
    ("Jane.Doe+news@Mail.Example.co.uk", "[EMAIL]"),
    (
        "<ops@example.org>,dev-team@example.org.",
        "<[EMAIL]>,[EMAIL].",
    ),
    (
        "mailto:j_smith99@sub-domain.example.io?subject=hi",
        "mailto:[EMAIL]?subject=hi",
    ),
    // International phone numbers.
    ("+44 20 7946 0958", "[PHONE]"),
    ("+33 1 23 45 67 89", "[PHONE]"),
    (
        "tel: +44 (0)20 7946 0958, ask for Sam",
        "tel: [PHONE], ask for Sam",
    ),
    ("+442079460958", "[PHONE]"),
    ("+49-30-901820", "[PHONE]"),
    ("+44 20 7946 0958 2024-02-05", "[PHONE] 2024-02-05"),
    // North American phone numbers.
    ("(555) 123-4567", "[PHONE]"),
    ("555-123-4567", "[PHONE]"),
    ("+1 555 123 4567", "[PHONE]"),
    ("555.123.4567", "[PHONE]"),
    ("+1-555-123-4567", "[PHONE]"),
    ("+1 (555) 123-4567", "[PHONE]"),
    ("+15551234567", "[PHONE]"),
    ("call 555-123-4567.", "call [PHONE]."),
    ("555-123-4567,555-987-6543", "[PHONE],[PHONE]"),
    // Card numbers: test numbers of each network, in one run, with spaces and with dashes.
    ("4111111111111111", "[CARD]"),
    ("4111 1111 1111 1111", "[CARD]"),
    ("4111-1111-1111-1111", "[CARD]"),
    (
        "card 4012 8888 8888 1881 exp 12/27",
        "card [CARD] exp 12/27",
    ),
    ("4222222222222", "[CARD]"),
    ("4000 0000 0000 0000 006", "[CARD]"),
    ("5555555555554444", "[CARD]"),
    ("2223003122003222", "[CARD]"),
    ("378282246310005", "[CARD]"),
    ("3782 822463 10005", "[CARD]"),
    ("6011111111111117", "[CARD]"),
    ("3530111333300000", "[CARD]"),
    ("30569309025904", "[CARD]"),
    ("6200000000000005", "[CARD]"),
    ("4111 1111 1111 1111 123", "[CARD] 123"),
    // Social security numbers.
    ("123-45-6789", "[SSN]"),
    ("SSN:078-05-1120.", "SSN:[SSN]."),
    ("899-99-9999", "[SSN]"),
    // IPv4 addresses.
    ("192.168.0.1", "[IPV4]"),
    ("from 10.0.0.1:8080", "from [IPV4]:8080"),
    ("10.1.2.0/24", "[IPV4]/24"),
    ("8.8.8.8, 255.255.255.255", "[IPV4], [IPV4]"),
    ("http://172.16.254.1/login", "http://[IPV4]/login"),
    // IPv6 addresses.
    ("2001:db8::1", "[IPV6]"),
    ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "[IPV6]"),
    ("fe80::1%eth0", "[IPV6]%eth0"),
    ("[2001:db8:85a3::8a2e:370:7334]:443", "[[IPV6]]:443"),
    ("::1", "[IPV6]"),
    ("::ffff:192.168.1.1", "[IPV6]"),
    ("FE80::0202:B3FF:FE1E:8329", "[IPV6]"),
    // Several kinds in one string.
    (
        "a@b.com / +1 555 123 4567 / 4111111111111111",
        "[EMAIL] / [PHONE] / [CARD]",
    ),
];

/// Text that is not PII (or that a detector must not take for its kind), left as it is.
const MUST_NOT_TOUCH: &[&str] = &[
    // Ids, order numbers, SKUs, hex and UUIDs.
    "1001",
    "order 1001",
    "ORD-2024-000123",
    "SKU-12345-XL",
    "abc123def456",
    "#ff00aa",
    "0xdeadbeef",
    "550e8400-e29b-41d4-a716-446655440000",
    "12345678-1234-1234-1234-123456789012",
    "cus_4111111111111111",
    "ISBN 978-3-16-148410-0",
    // Epoch timestamps, one of which passes the Luhn check.
    "1707145312884",
    "1717145312888",
    "1707145312884548",
    "1707145312",
    // Dates and times.
    "2020-04-03T11:20:00",
    "2024-02-05 10:01:52.884548 -0500",
    "2024-02-05T16:02:34.934749+01:00",
    "2024-02-05T16:02:34Z",
    "2020-04-03",
    "03/04/2020 11:20",
    "11:20:00",
    "12:30:45.123",
    "+0100",
    "+05:30",
    // Prices and amounts.
    "1234.56",
    "$1,234.56",
    "EUR 1 234 567,89",
    "-42.5",
    "+3.14159265",
    "+25000000 points",
    "Q3 revenue 1234567.89",
    // Postcodes.
    "SW1A 1AA",
    "90210",
    "90210-1234",
    "75008 Paris",
    // Version numbers with other than four parts, or glued to letters.
    "1.2.3",
    "v1.2.3.4",
    "1.2.3.4.5",
    "release-1.2.3",
    // Not valid addresses.
    "256.1.1.1",
    "01.02.03.04",
    "10.0.0.999",
    "00:1a:2b:3c:4d:5e",
    "std::io::Read",
    "a :: b",
    "dead::beef::1",
    // Not valid SSNs: area 000, 666 or 9xx; group 00; serial 0000.
    "000-12-3456",
    "666-12-3456",
    "900-12-3456",
    "123-00-4567",
    "123-45-0000",
    "1123-45-6789",
    // Not card numbers: Luhn fails, no major issuer, too short or too long, mixed separators.
    "4111 1111 1111 1112",
    "0000000000000000",
    "1234567890123",
    "2024 1234 5678 9012",
    "411111111111",
    "41111111111111111111",
    "4111-1111 1111-1111",
    // Not phone numbers.
    "555-1234",
    "5551234567",
    "155-123-4567",
    "555 123 4567",
    "555-123-45678",
    "2024-555-123-4567",
    "x555-123-4567",
    "+1 155 123 4567",
    // Not email addresses.
    "logo@2x.png",
    "user@localhost",
    "@handle",
    "name@",
    "a@b",
    "ünïcödé text — no digits",
    "",
];

#[test]
fn every_must_detect_example_is_found() {
    let mut failures = Vec::new();
    for (input, expected) in MUST_DETECT {
        let got = text(&[], input);
        if got != *expected {
            failures.push(format!("{input:?}: got {got:?}, expected {expected:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn no_must_not_touch_example_is_changed() {
    let mut failures = Vec::new();
    for input in MUST_NOT_TOUCH {
        let got = text(&[], input);
        if got != *input {
            failures.push(format!("{input:?}: got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_card_examples_are_real_test_numbers() {
    for (input, expected) in MUST_DETECT {
        if *expected == "[CARD]" {
            let digits: Vec<u8> = input
                .bytes()
                .filter(u8::is_ascii_digit)
                .map(|d| d - b'0')
                .collect();
            assert!(luhn(&digits), "{input}");
        }
    }
    assert!(!luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]));
}

#[test]
fn four_part_version_numbers_are_valid_ipv4_and_are_masked() {
    // A documented limit: without context, version 1.2.3.4 is the address 1.2.3.4.
    assert_eq!(text(&[], "version 1.2.3.4"), "version [IPV4]");
    assert_eq!(
        text(&[("ipv4", "false")], "version 1.2.3.4"),
        "version 1.2.3.4"
    );
}

#[test]
fn numbers_and_everything_else_keep_their_exact_bytes() {
    let input = r#"{"id":1001,"amount":1.0,"big":123456789012345678901234567890,"e":1e3,"neg":-0.0,"card":4111111111111111,"ok":true,"none":null,"s":"caf\u00e9 \"q\"","ts":1707145312884}"#;
    assert_eq!(run(&[], input).unwrap().unwrap(), input);
}

#[test]
fn nested_objects_and_arrays_are_walked_in_order() {
    let input = r#"{"z":1,"customer":{"name":"Ada","contact":{"email":"ada@example.com","phones":["+44 20 7946 0958",{"home":"555-123-4567"}]}},"items":[[["ip 10.0.0.1"]]],"a":2}"#;
    assert_eq!(
        run(&[], input).unwrap().unwrap(),
        r#"{"z":1,"customer":{"name":"Ada","contact":{"email":"[EMAIL]","phones":["[PHONE]",{"home":"[PHONE]"}]}},"items":[[["ip [IPV4]"]]],"a":2}"#
    );
}

#[test]
fn top_level_values_of_any_json_type() {
    assert_eq!(
        run(&[], r#""mail a@b.com""#).unwrap().unwrap(),
        r#""mail [EMAIL]""#
    );
    assert_eq!(
        run(&[], r#"["a@b.com", 1.50, "x"]"#).unwrap().unwrap(),
        r#"["[EMAIL]",1.50,"x"]"#
    );
    assert_eq!(
        run(&[], "  4111111111111111 \n").unwrap().unwrap(),
        "4111111111111111"
    );
    assert_eq!(run(&[], "null").unwrap().unwrap(), "null");
    assert_eq!(run(&[], "{}").unwrap().unwrap(), "{}");
    assert_eq!(run(&[], "[]").unwrap().unwrap(), "[]");
}

#[test]
fn escapes_are_decoded_before_detection_and_kept_when_nothing_changes() {
    assert_eq!(
        run(&[], r#"{"s":"mail a\u0040b.com"}"#).unwrap().unwrap(),
        r#"{"s":"mail [EMAIL]"}"#
    );
    assert_eq!(
        run(&[], r#"{"caf\u00e9":"a@b.com\n\t\"x\"","k\"":"\u00e9"}"#)
            .unwrap()
            .unwrap(),
        r#"{"café":"[EMAIL]\n\t\"x\"","k\"":"\u00e9"}"#
    );
}

#[test]
fn hash_gives_salted_deterministic_pseudonyms() {
    let s = [("action", "hash"), ("salt", "s")];
    // Known answers: python3 -c 'import hmac,hashlib; print(hmac.new(b"s", b"a@b.com", hashlib.sha256).hexdigest()[:16])'
    assert_eq!(
        text(&s, "mail a@b.com now"),
        "mail [EMAIL:078760c0aa2f7bee] now"
    );
    assert_eq!(text(&s, "+44 20 7946 0958"), "[PHONE:f859f4a76db0234d]");
    assert_eq!(text(&s, "4111 1111 1111 1111"), "[CARD:c5126ce16a0d413a]");
    assert_eq!(text(&s, "123-45-6789"), "[SSN:fcb495ccf704ea59]");
    assert_eq!(text(&s, "192.168.0.1"), "[IPV4:b1e77247810c8da9]");
    assert_eq!(text(&s, "2001:DB8:0::1"), "[IPV6:14ef6e9f21c921a9]");
    // Same input and salt, same output, in another instance too.
    assert_eq!(text(&s, "a@b.com"), text(&s, "a@b.com"));
    // One value written in different ways has one pseudonym.
    assert_eq!(text(&s, "A@B.COM"), "[EMAIL:078760c0aa2f7bee]");
    assert_eq!(text(&s, "+44 (0)20 7946 0958"), text(&s, "+442079460958"));
    assert_eq!(text(&s, "+44 (0)20 7946 0958"), "[PHONE:f859f4a76db0234d]");
    assert_eq!(text(&s, "(555) 123-4567"), "[PHONE:739a09c62339a993]");
    assert_eq!(text(&s, "+1 555.123.4567"), "[PHONE:739a09c62339a993]");
    assert_eq!(
        text(&s, "4111-1111-1111-1111"),
        text(&s, "4111111111111111")
    );
    // A different salt, a different pseudonym; different values, different pseudonyms.
    let t = [("action", "hash"), ("salt", "t")];
    assert_eq!(text(&t, "a@b.com"), "[EMAIL:ee39d518de8c0bc4]");
    assert_ne!(text(&s, "a@b.com"), text(&s, "a@c.com"));
}

#[test]
fn drop_removes_the_member_or_element_that_held_pii() {
    let d = [("action", "drop")];
    assert_eq!(
        run(
            &d,
            r#"{"id":1,"note":"mail a@b.com","n":{"ip":"10.0.0.1","ok":"fine"},"list":["x","555-123-4567","y",2]}"#
        )
        .unwrap()
        .unwrap(),
        r#"{"id":1,"n":{"ok":"fine"},"list":["x","y",2]}"#
    );
    // Commas stay right when the first or every member goes.
    assert_eq!(
        run(&d, r#"{"a":"a@b.com","b":1}"#).unwrap().unwrap(),
        r#"{"b":1}"#
    );
    assert_eq!(
        run(&d, r#"{"a":"a@b.com","b":"c@d.com"}"#)
            .unwrap()
            .unwrap(),
        "{}"
    );
    assert_eq!(run(&d, r#"["a@b.com","c@d.com"]"#).unwrap().unwrap(), "[]");
    // A value that is one string holding PII produces no output: the record is filtered out.
    assert_eq!(run(&d, r#""mail a@b.com""#).unwrap(), None);
    assert_eq!(run(&d, r#""clean""#).unwrap().unwrap(), r#""clean""#);
}

#[test]
fn drop_and_mask_fields_by_dotted_path() {
    let cfg = [
        ("drop", "ssn, customer.card"),
        ("mask", "name,customer.address,items.note"),
    ];
    let input = r#"{"name":"Ada Lovelace","ssn":"n/a","customer":{"card":7,"address":{"city":"London"},"name":"Bob"},"items":[{"note":"fragile","sku":"A1"},{"note":null}],"x":{"ssn":"kept: not at the root"}}"#;
    assert_eq!(
        run(&cfg, input).unwrap().unwrap(),
        r#"{"name":"[REDACTED]","customer":{"address":"[REDACTED]","name":"Bob"},"items":[{"note":"[REDACTED]","sku":"A1"},{"note":"[REDACTED]"}],"x":{"ssn":"kept: not at the root"}}"#
    );
    // Listed fields that are absent change nothing; a top-level array is walked through.
    assert_eq!(
        run(&cfg, r#"[{"ssn":"1"},{"other":2}]"#).unwrap().unwrap(),
        r#"[{},{"other":2}]"#
    );
}

#[test]
fn whole_field_masks_apply_whatever_the_action_and_detectors() {
    let cfg = [
        ("mask", "name"),
        ("action", "hash"),
        ("salt", "s"),
        ("email", "false"),
    ];
    assert_eq!(
        run(
            &cfg,
            r#"{"name":"a@b.com","mail":"a@b.com","ip":"1.2.3.4"}"#
        )
        .unwrap()
        .unwrap(),
        r#"{"name":"[REDACTED]","mail":"a@b.com","ip":"[IPV4:005d3bf728fc74b3]"}"#
    );
}

#[test]
fn each_detector_can_be_switched_off() {
    let input = "a@b.com +44 20 7946 0958 4111111111111111 123-45-6789 10.0.0.1 2001:db8::1";
    assert_eq!(
        text(&[], input),
        "[EMAIL] [PHONE] [CARD] [SSN] [IPV4] [IPV6]"
    );
    let expected = [
        ("email", "a@b.com [PHONE] [CARD] [SSN] [IPV4] [IPV6]"),
        (
            "phone",
            "[EMAIL] +44 20 7946 0958 [CARD] [SSN] [IPV4] [IPV6]",
        ),
        (
            "card",
            "[EMAIL] [PHONE] 4111111111111111 [SSN] [IPV4] [IPV6]",
        ),
        ("ssn", "[EMAIL] [PHONE] [CARD] 123-45-6789 [IPV4] [IPV6]"),
        ("ipv4", "[EMAIL] [PHONE] [CARD] [SSN] 10.0.0.1 [IPV6]"),
        ("ipv6", "[EMAIL] [PHONE] [CARD] [SSN] [IPV4] 2001:db8::1"),
    ];
    for (key, output) in expected {
        assert_eq!(text(&[(key, "false")], input), output, "{key}=false");
        assert_eq!(
            text(&[(key, "true")], input),
            text(&[], input),
            "{key}=true"
        );
    }
    let all_off: Vec<(&str, &str)> = Kind::ALL.iter().map(|k| (k.key(), "false")).collect();
    assert_eq!(text(&all_off, input), input);
}

#[test]
fn bad_values_are_per_record_errors_not_panics() {
    assert_eq!(
        run(&[], "not json").unwrap_err(),
        "value is not valid JSON: expected ident at line 1 column 2"
    );
    assert_eq!(
        run(&[], r#"{"a":1} x"#).unwrap_err(),
        "value is not valid JSON: trailing characters at line 1 column 9"
    );
    assert_eq!(
        run(&[], "").unwrap_err(),
        "value is not valid JSON: EOF while parsing a value at line 1 column 0"
    );
    assert_eq!(
        run(&[], r#"{"a":"#).unwrap_err(),
        "value is not valid JSON: EOF while parsing a value at line 1 column 5"
    );
    let mut t = stripper(&[]);
    assert_eq!(
        run_bytes(&mut t, b"\"\xff\"").unwrap_err(),
        "value is not UTF-8: invalid utf-8 sequence of 1 bytes from index 1"
    );
    // The instance carries on after a bad record.
    assert_eq!(
        run_bytes(&mut t, br#""a@b.com""#).unwrap().unwrap(),
        r#""[EMAIL]""#
    );

    let deep = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert_eq!(run(&[], &deep).unwrap().unwrap(), deep);
    let too_deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        run(&[], &too_deep).unwrap_err(),
        "value is nested deeper than 128 levels"
    );
}

#[test]
fn tombstones_pass_through() {
    let mut t = stripper(&[]);
    let outputs = testing::process(
        &mut t,
        &Record {
            key: Some(b"k"),
            ..Record::default()
        },
    )
    .unwrap();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].value, None);
    assert_eq!(outputs[0].key.as_deref(), Some(&b"k"[..]));
}

#[test]
fn long_strings_of_digits_and_candidates_stay_linear() {
    // Every position of these starts a candidate that is refused.
    let digits = "1".repeat(200_000);
    assert_eq!(text(&[], &digits), digits);
    let times = "10:01:52 ".repeat(20_000);
    assert_eq!(text(&[], &times), times);
    let local = format!("{}@2x.png", "a".repeat(200_000));
    assert_eq!(text(&[], &local), local);
    // Many finds in one string.
    assert_eq!(
        text(&[], &"a@b.com 10.0.0.1 ".repeat(20_000)),
        "[EMAIL] [IPV4] ".repeat(20_000)
    );
}

#[test]
fn bad_config_is_refused_by_key() {
    assert_eq!(
        config_error(&[("emial", "false")]),
        "unknown config key `emial`; known keys: drop, mask, action, salt, email, phone, card, ssn, ipv4, ipv6"
    );
    assert_eq!(
        config_error(&[("phone", "no")]),
        "config key `phone`: invalid value `no`: provided string was not `true` or `false`"
    );
    assert_eq!(
        config_error(&[("action", "redact")]),
        "config key `action`: invalid value `redact`, expected one of: mask, hash, drop"
    );
    assert_eq!(
        config_error(&[("action", "hash")]),
        "config key `salt` is required when action = hash: a secret, the same in every deployment whose pseudonyms must match"
    );
    assert_eq!(
        config_error(&[("action", "hash"), ("salt", "")]),
        "config key `salt` must not be empty"
    );
    assert_eq!(
        config_error(&[("salt", "s")]),
        "config key `salt` is only used when action = hash"
    );
    assert_eq!(
        config_error(&[("drop", "ssn,,card")]),
        "config key `drop`: invalid field path ``: expected names separated by dots, such as `customer.email`"
    );
    assert_eq!(
        config_error(&[("mask", "customer..name")]),
        "config key `mask`: invalid field path `customer..name`: expected names separated by dots, such as `customer.email`"
    );
    assert_eq!(
        config_error(&[("drop", "a.b"), ("mask", "x, a.b")]),
        "config key `mask`: field `a.b` is also in `drop`"
    );
    // Empty lists are allowed, and mean no field.
    assert!(testing::init::<PiiStripper>(&[("drop", ""), ("mask", " ")]).is_ok());
}
