use super::*;
use sluice_sdk::testing;

fn normaliser(config: &[(&str, &str)]) -> TzNormaliser {
    testing::init::<TzNormaliser>(config).expect("valid config")
}

/// Runs one JSON value through the transform; the output value as text, or the error message.
fn run(config: &[(&str, &str)], value: &str) -> Result<String, String> {
    let mut t = normaliser(config);
    testing::process(&mut t, &Record::from_value(value.as_bytes()))
        .map(|outs| {
            assert_eq!(outs.len(), 1);
            outs[0].value_str().unwrap().to_string()
        })
        .map_err(|e| e.to_string())
}

fn date(config: &[(&str, &str)], text: &str) -> Result<String, String> {
    let value = serde_json::json!({ "date": text }).to_string();
    run(config, &value).map(|out| {
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v.get("timestamp").unwrap().to_string()
    })
}

#[test]
fn seed_lines_become_epoch_millis_in_place_of_date() {
    assert_eq!(
        run(
            &[],
            r#"{"date": "2024-02-05 10:01:52.884548 -0500", "message": "0"}"#
        )
        .unwrap(),
        r#"{"timestamp":1707145312884.548,"message":"0"}"#
    );
    assert_eq!(
        run(
            &[],
            r#"{"date": "2024-02-05 16:02:34.934749 +0100", "message": "1"}"#
        )
        .unwrap(),
        r#"{"timestamp":1707145354934.749,"message":"1"}"#
    );
}

#[test]
fn other_fields_keep_their_order_and_values() {
    let out = run(
        &[],
        r#"{"a":1,"date":"2024-02-05 10:01:52.000000 -0500","nested":{"x":[1,2.5,"s"]},"z":null}"#,
    );
    assert_eq!(
        out.unwrap(),
        r#"{"a":1,"timestamp":1707145312000,"nested":{"x":[1,2.5,"s"]},"z":null}"#
    );
}

#[test]
fn whole_milliseconds_are_integers() {
    assert_eq!(
        date(&[], "2024-02-05 10:01:52.000000 -0500").unwrap(),
        "1707145312000"
    );
}

#[test]
fn negative_offsets_cross_midnight_and_leap_days() {
    // 23:30 on 29 February in New York is 04:30 on 1 March in UTC.
    assert_eq!(
        date(&[], "2024-02-29 23:30:00.250000 -0500").unwrap(),
        "1709267400250"
    );
    let rfc = [("output", "rfc3339")];
    assert_eq!(
        date(&rfc, "2024-02-29 23:30:00.250000 -0500").unwrap(),
        r#""2024-03-01T04:30:00.250Z""#
    );
}

#[test]
fn a_leap_day_in_a_common_year_is_an_error_naming_the_value() {
    let err = date(&[], "2023-02-29 12:00:00.000000 +0000").unwrap_err();
    assert!(
        err.starts_with("field `date`: cannot parse `2023-02-29 12:00:00.000000 +0000`"),
        "{err}"
    );
}

#[test]
fn half_and_quarter_hour_offsets() {
    assert_eq!(
        date(&[], "2024-02-29 12:00:00.000000 +0530").unwrap(),
        "1709188200000"
    );
    assert_eq!(
        date(&[], "2024-02-29 12:00:00.000000 +0545").unwrap(),
        "1709187300000"
    );
    assert_eq!(
        date(&[], "2024-02-29 12:00:00.000000 -0930").unwrap(),
        "1709242200000"
    );
    assert_eq!(
        date(&[], "2024-02-29 12:00:00.000000 +05:30").unwrap(),
        "1709188200000"
    );
}

#[test]
fn fractions_follow_python_percent_f() {
    assert_eq!(
        date(&[], "2024-02-05 10:01:52.884 -0500").unwrap(),
        "1707145312884"
    );
    assert_eq!(
        date(&[], "2024-02-05 10:01:52.5 -0500").unwrap(),
        "1707145312500"
    );
    let bare = [("format", "%Y%m%dT%H%M%S%f%z")];
    assert_eq!(
        date(&bare, "20240205T100152884548-0500").unwrap(),
        "1707145312884.548"
    );
}

#[test]
fn units() {
    let text = "2024-02-05 10:01:52.884548 -0500";
    assert_eq!(date(&[("unit", "s")], text).unwrap(), "1707145312.884548");
    assert_eq!(date(&[("unit", "us")], text).unwrap(), "1707145312884548");
}

/// A leap second is the second after 23:59:59 in every unit (it once panicked in seconds).
#[test]
fn a_leap_second_runs_into_the_next_second_in_every_unit() {
    let text = "2016-12-31 23:59:60.5 +0000";
    assert_eq!(date(&[("unit", "s")], text).unwrap(), "1483228800.5");
    assert_eq!(date(&[], text).unwrap(), "1483228800500");
    assert_eq!(date(&[("unit", "us")], text).unwrap(), "1483228800500000");
    let before_1970 = "1969-12-31 23:59:60 +0000";
    assert_eq!(date(&[("unit", "s")], before_1970).unwrap(), "0");
}

#[test]
fn local_times_use_the_configured_zone() {
    let paris = [
        ("format", "%Y-%m-%d %H:%M:%S%.f"),
        ("timezone", "Europe/Paris"),
    ];
    assert_eq!(
        date(&paris, "2024-07-01 12:00:00.5").unwrap(),
        "1719828000500"
    );
    let utc = [("format", "%Y-%m-%d %H:%M:%S")];
    assert_eq!(date(&utc, "1970-01-01 00:00:01").unwrap(), "1000");
    let day = [("format", "%Y-%m-%d"), ("timezone", "Asia/Kolkata")];
    assert_eq!(date(&day, "2024-02-29").unwrap(), "1709145000000");
}

#[test]
fn dst_gap_shifts_forward_by_default_or_errors() {
    let ny = [
        ("format", "%Y-%m-%d %H:%M:%S"),
        ("timezone", "America/New_York"),
    ];
    // 02:30 does not exist on 10 March 2024 in New York: it reads as 03:30 EDT.
    assert_eq!(date(&ny, "2024-03-10 02:30:00").unwrap(), "1710055800000");
    assert_eq!(date(&ny, "2024-03-10 03:30:00").unwrap(), "1710055800000");
    let sydney = [
        ("format", "%Y-%m-%d %H:%M:%S"),
        ("timezone", "Australia/Sydney"),
    ];
    assert_eq!(
        date(&sydney, "2024-10-06 02:30:00").unwrap(),
        "1728145800000"
    );
    let strict = [
        ("format", "%Y-%m-%d %H:%M:%S"),
        ("timezone", "America/New_York"),
        ("nonexistent", "error"),
    ];
    let err = date(&strict, "2024-03-10 02:30:00").unwrap_err();
    assert!(err.contains("does not exist in America/New_York"), "{err}");
}

#[test]
fn dst_overlap_picks_earliest_by_default() {
    let ny = [
        ("format", "%Y-%m-%d %H:%M:%S"),
        ("timezone", "America/New_York"),
    ];
    assert_eq!(date(&ny, "2024-11-03 01:30:00").unwrap(), "1730611800000");
    let latest = [ny[0], ny[1], ("ambiguous", "latest")];
    assert_eq!(
        date(&latest, "2024-11-03 01:30:00").unwrap(),
        "1730615400000"
    );
    let strict = [ny[0], ny[1], ("ambiguous", "error")];
    assert!(
        date(&strict, "2024-11-03 01:30:00")
            .unwrap_err()
            .contains("occurs twice")
    );
}

#[test]
fn output_field_and_field_are_configurable() {
    let cfg = [("field", "when"), ("output_field", "when_ms")];
    assert_eq!(
        run(
            &cfg,
            r#"{"id":7,"when":"2024-02-05 10:01:52.884548 -0500"}"#
        )
        .unwrap(),
        r#"{"id":7,"when_ms":1707145312884.548}"#
    );
    let same = [("field", "ts"), ("output_field", "ts")];
    assert_eq!(
        run(&same, r#"{"ts":"1970-01-01 00:00:00.000000 +0000","x":1}"#).unwrap(),
        r#"{"ts":0,"x":1}"#
    );
}

#[test]
fn bad_records_are_errors_that_name_the_field_and_value() {
    assert_eq!(
        run(&[], r#"{"message":"0"}"#).unwrap_err(),
        "field `date` is missing"
    );
    assert_eq!(
        run(&[], r#"{"date":12}"#).unwrap_err(),
        "field `date` is not a string: 12"
    );
    let err = run(&[], r#"{"date":"yesterday"}"#).unwrap_err();
    assert!(
        err.starts_with(
            "field `date`: cannot parse `yesterday` with format `%Y-%m-%d %H:%M:%S.%f %z`"
        ),
        "{err}"
    );
    assert!(
        run(&[], "not json")
            .unwrap_err()
            .starts_with("value is not valid JSON")
    );
    assert_eq!(
        run(&[], "[1,2]").unwrap_err(),
        "value is not a JSON object: [1,2]"
    );
    let mut t = normaliser(&[]);
    assert_eq!(
        testing::process(&mut t, &Record::default())
            .unwrap_err()
            .to_string(),
        "record has no value"
    );
}

#[test]
fn bad_config_is_refused_by_key() {
    let err = |cfg: &[(&str, &str)]| {
        testing::init::<TzNormaliser>(cfg)
            .err()
            .unwrap()
            .to_string()
    };
    assert!(err(&[("feild", "x")]).starts_with("unknown config key `feild`"));
    assert_eq!(
        err(&[("timezone", "Mars/Olympus")]),
        "config key `timezone`: unknown IANA time zone `Mars/Olympus` (e.g. Europe/Paris)"
    );
    assert_eq!(
        err(&[("unit", "ns")]),
        "config key `unit`: invalid value `ns`, expected one of: ms, s, us"
    );
    assert!(err(&[("format", "%Q")]).starts_with("config key `format`: invalid format `%Q`"));
    assert_eq!(
        err(&[("field", "")]),
        "config key `field` must not be empty"
    );
}

#[test]
fn python_fraction_translation() {
    assert_eq!(
        python_fraction_to_chrono("%H:%M:%S.%f %z"),
        "%H:%M:%S%.f %z"
    );
    assert_eq!(python_fraction_to_chrono("%S%f"), "%S%6f");
    assert_eq!(python_fraction_to_chrono("100%% %f"), "100%% %6f");
    assert_eq!(python_fraction_to_chrono("trailing %"), "trailing %");
}

#[test]
fn instants_before_the_epoch() {
    assert_eq!(
        date(&[], "1969-12-31 23:59:59.250000 +0000").unwrap(),
        "-750"
    );
    assert_eq!(
        date(&[], "1969-12-31 23:59:59.250123 +0000").unwrap(),
        "-749.877"
    );
    assert_eq!(
        date(&[("unit", "s")], "1969-12-31 23:59:59.250123 +0000").unwrap(),
        "-0.749877"
    );
}

#[test]
fn other_values_keep_their_exact_bytes() {
    let input = r#"{"date":"1970-01-01 00:00:00.000000 +0000","amount":1.0,"big":1e5,"s":"caf\u00e9","n":{"a": [1, 2]}}"#;
    assert_eq!(
        run(&[], input).unwrap(),
        r#"{"timestamp":0,"amount":1.0,"big":1e5,"s":"caf\u00e9","n":{"a": [1, 2]}}"#
    );
}

#[test]
fn the_output_field_replaces_a_field_of_that_name() {
    let input = r#"{"timestamp":"old","date":"1970-01-01 00:00:01.000000 +0000","x":1}"#;
    assert_eq!(run(&[], input).unwrap(), r#"{"timestamp":1000,"x":1}"#);
}

#[test]
fn epoch_numbers_are_exact_decimals() {
    let out = run(&[], r#"{"date":"2024-02-05 10:01:52.884548123 -0500"}"#).unwrap();
    assert_eq!(out, r#"{"timestamp":1707145312884.548123}"#);
    let out = run(
        &[("unit", "s")],
        r#"{"date":"2024-02-05 10:01:52.000000001 -0500"}"#,
    )
    .unwrap();
    assert_eq!(out, r#"{"timestamp":1707145312.000000001}"#);
}

/// The hand-written parser of the default format agrees with chrono on every string it accepts,
/// and accepts the canonical shape.
#[test]
fn default_format_fast_path_agrees_with_chrono() {
    let slow = Normaliser {
        format: String::new(),
        ..Normaliser::from_config(&Config::default()).unwrap()
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut accepted = 0;
    for i in 0..200_000 {
        let digits = 1 + next(10) as usize;
        let fraction: String = (0..digits)
            .map(|_| char::from(b'0' + next(10) as u8))
            .collect();
        let text = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{fraction} {}{:02}{:02}",
            next(10_000),
            next(14),
            next(33),
            next(25),
            next(61),
            next(62),
            if i % 2 == 0 { '+' } else { '-' },
            next(26),
            next(61)
        );
        if let Some(fast) = parse_default_format(text.as_bytes()) {
            accepted += 1;
            assert_eq!(slow.parse(&text).ok(), Some(fast), "{text}");
        }
    }
    assert!(
        accepted > 100_000,
        "the fast path took only {accepted} of 200000"
    );
    for text in [
        "2024-02-05 10:01:52.884548 -0500",
        "2024-02-29 23:59:59.999999999 +2359",
        "0000-01-01 00:00:00.0 -0000",
    ] {
        assert_eq!(
            parse_default_format(text.as_bytes()),
            slow.parse(text).ok(),
            "{text}"
        );
        assert!(parse_default_format(text.as_bytes()).is_some(), "{text}");
    }
    // Other shapes go to chrono: no fraction, a colon in the offset, a leap second, no offset.
    for text in [
        "2024-02-05 10:01:52 -0500",
        "2024-02-05 10:01:52.1 -05:00",
        "2016-12-31 23:59:60.5 +0000",
        "2024-02-05 10:01:52.1",
    ] {
        assert_eq!(parse_default_format(text.as_bytes()), None, "{text}");
    }
}
