use super::*;
use sluice_sdk::testing::{self, Output};

/// The seed's orders, as produced.
const ORDERS: [&str; 5] = [
    r#"{"customer_id": "2", "order_id": "13", "price": 50.50, "currency": "usd", "ts": "2020-04-03T11:20:00"}"#,
    r#"{"customer_id": "7", "order_id": "29", "price": 15.00, "currency": "aud", "ts": "2020-04-02T12:36:00"}"#,
    r#"{"customer_id": "5", "order_id": "17", "price": 25.25, "currency": "eur", "ts": "2020-04-02T17:22:00"}"#,
    r#"{"customer_id": "5", "order_id": "15", "price": 13.75, "currency": "usd", "ts": "2020-04-03T02:55:00"}"#,
    r#"{"customer_id": "7", "order_id": "22", "price": 29.71, "currency": "aud", "ts": "2020-04-04T00:12:00"}"#,
];

/// The seed's orders joined with their customers (`c.name AS customer_name, c.age AS customer_age`).
const ENRICHED: [&str; 5] = [
    r#"{"customer_id":"2","order_id":"13","price":50.50,"currency":"usd","ts":"2020-04-03T11:20:00","customer_name":"bill","customer_age":51}"#,
    r#"{"customer_id":"7","order_id":"29","price":15.00,"currency":"aud","ts":"2020-04-02T12:36:00","customer_name":"sue","customer_age":25}"#,
    r#"{"customer_id":"5","order_id":"17","price":25.25,"currency":"eur","ts":"2020-04-02T17:22:00","customer_name":"fred","customer_age":34}"#,
    r#"{"customer_id":"5","order_id":"15","price":13.75,"currency":"usd","ts":"2020-04-03T02:55:00","customer_name":"fred","customer_age":34}"#,
    r#"{"customer_id":"7","order_id":"22","price":29.71,"currency":"aud","ts":"2020-04-04T00:12:00","customer_name":"sue","customer_age":25}"#,
];

const JOIN: [(&str, &str); 3] = [
    ("table", "customers"),
    ("key_field", "customer_id"),
    ("fields", "name:customer_name,age:customer_age"),
];

/// Fills this thread's `customers` table with the seed's three customers, and nothing else.
fn seed_customers() {
    testing::clear_tables();
    for (id, customer) in [
        ("5", r#"{"id":"5","name":"fred","age":34}"#),
        ("7", r#"{"id":"7","name":"sue","age":25}"#),
        ("2", r#"{"id":"2","name":"bill","age":51}"#),
    ] {
        testing::set_table("customers", id.as_bytes(), Some(customer.as_bytes()));
    }
}

fn enricher(config: &[(&str, &str)]) -> Enricher {
    testing::init::<Enricher>(config).expect("valid config")
}

/// Runs one JSON value through `t`: its outputs, or the error message.
fn outputs(t: &mut Enricher, value: &str) -> Result<Vec<Output>, String> {
    testing::process(t, &Record::from_value(value.as_bytes())).map_err(|e| e.to_string())
}

/// Runs one JSON value through `t`, expecting one output to the default topic: its value.
fn one(t: &mut Enricher, value: &str) -> Result<String, String> {
    outputs(t, value).map(|outs| {
        assert_eq!(outs.len(), 1, "{outs:?}");
        assert_eq!(outs[0].topic, None);
        outs[0].value_str().unwrap().to_string()
    })
}

/// Builds an enricher from `config` and runs one value through it, as [`one`] does.
fn run(config: &[(&str, &str)], value: &str) -> Result<String, String> {
    one(&mut enricher(config), value)
}

fn config_error(config: &[(&str, &str)]) -> String {
    testing::init::<Enricher>(config)
        .expect_err("config refused")
        .to_string()
}

#[test]
fn seed_orders_are_joined_with_their_customers() {
    seed_customers();
    let mut t = enricher(&JOIN);
    let records: Vec<Record<'_>> = ORDERS
        .iter()
        .enumerate()
        .map(|(i, order)| Record {
            key: Some(b"k"),
            timestamp: Some(i as i64),
            ..Record::from_value(order.as_bytes())
        })
        .collect();
    let results = testing::process_batch(&mut t, &records);
    for (i, (result, expected)) in results.iter().zip(ENRICHED).enumerate() {
        let outs = result.as_ref().unwrap();
        assert_eq!(outs.len(), 1);
        assert_eq!(outs[0].value_str(), Some(expected));
        // Key and timestamp are the order's.
        assert_eq!(outs[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(outs[0].timestamp, Some(i as i64));
    }
    // What the ksqlDB tutorial expects of order 22.
    let order22 = results[4].as_ref().unwrap()[0].json();
    assert_eq!(order22["customer_name"], "sue");
    assert_eq!(order22["customer_age"], 25);
    assert_eq!(order22["price"], 29.71);
    assert_eq!(order22["currency"], "aud");
}

#[test]
fn names_without_a_rename_take_the_prefix() {
    seed_customers();
    let config = [
        JOIN[0],
        JOIN[1],
        ("fields", "name,age"),
        ("prefix", "customer_"),
    ];
    assert_eq!(run(&config, ORDERS[0]).unwrap(), ENRICHED[0]);
    let unprefixed = [JOIN[0], JOIN[1], ("fields", " name , age:years ")];
    assert_eq!(
        run(&unprefixed, r#"{"customer_id":"2"}"#).unwrap(),
        r#"{"customer_id":"2","name":"bill","years":51}"#
    );
    let mixed = [
        JOIN[0],
        JOIN[1],
        ("fields", "age,name:who"),
        ("prefix", "c_"),
    ];
    assert_eq!(
        run(&mixed, r#"{"customer_id":"2"}"#).unwrap(),
        r#"{"customer_id":"2","c_age":51,"who":"bill"}"#
    );
}

#[test]
fn without_fields_every_field_of_the_value_is_copied() {
    seed_customers();
    let all = [JOIN[0], JOIN[1]];
    assert_eq!(
        run(&all, ORDERS[0]).unwrap(),
        r#"{"customer_id":"2","order_id":"13","price":50.50,"currency":"usd","ts":"2020-04-03T11:20:00","id":"2","name":"bill","age":51}"#
    );
    // `customer_` + `id` replaces the order's own `customer_id` (same value here), which moves to
    // the end with the other copied fields.
    let prefixed = [JOIN[0], JOIN[1], ("prefix", "customer_")];
    assert_eq!(
        run(&prefixed, ORDERS[0]).unwrap(),
        r#"{"order_id":"13","price":50.50,"currency":"usd","ts":"2020-04-03T11:20:00","customer_id":"2","customer_name":"bill","customer_age":51}"#
    );
    // A prefix that needs escaping, and a value whose keys are escaped: both stay valid JSON.
    testing::set_table("customers", b"3", Some(br#"{"n\u00e4me":"\u00e4da"}"#));
    let quoted = [JOIN[0], JOIN[1], ("prefix", "c\"")];
    let out = run(&quoted, r#"{"customer_id":"3"}"#).unwrap();
    assert_eq!(out, r#"{"customer_id":"3","c\"n\u00e4me":"\u00e4da"}"#);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["c\"näme"],
        "äda"
    );
}

#[test]
fn without_fields_a_missing_key_adds_nothing() {
    seed_customers();
    let all = [JOIN[0], JOIN[1]];
    assert_eq!(
        run(&all, r#"{"customer_id": "9", "x": 1}"#).unwrap(),
        r#"{"customer_id":"9","x":1}"#
    );
}

#[test]
fn later_orders_see_an_updated_customer() {
    seed_customers();
    let mut t = enricher(&JOIN);
    assert_eq!(one(&mut t, ORDERS[1]).unwrap(), ENRICHED[1]);
    testing::set_table(
        "customers",
        b"7",
        Some(br#"{"id":"7","name":"susan","age":26}"#),
    );
    assert_eq!(
        one(&mut t, ORDERS[4]).unwrap(),
        r#"{"customer_id":"7","order_id":"22","price":29.71,"currency":"aud","ts":"2020-04-04T00:12:00","customer_name":"susan","customer_age":26}"#
    );
}

#[test]
fn a_deleted_customer_gives_nulls_as_a_left_join_does() {
    seed_customers();
    let mut t = enricher(&JOIN);
    assert_eq!(one(&mut t, ORDERS[2]).unwrap(), ENRICHED[2]);
    testing::set_table("customers", b"5", None);
    assert_eq!(
        one(&mut t, ORDERS[3]).unwrap(),
        r#"{"customer_id":"5","order_id":"15","price":13.75,"currency":"usd","ts":"2020-04-03T02:55:00","customer_name":null,"customer_age":null}"#
    );
    // The others are still there.
    assert_eq!(one(&mut t, ORDERS[4]).unwrap(), ENRICHED[4]);
}

#[test]
fn a_missing_or_null_key_field_is_a_missing_key() {
    seed_customers();
    let mut t = enricher(&JOIN);
    let nulls = r#""customer_name":null,"customer_age":null}"#;
    assert_eq!(
        one(&mut t, r#"{"order_id":"1"}"#).unwrap(),
        format!(r#"{{"order_id":"1",{nulls}"#)
    );
    assert_eq!(
        one(&mut t, r#"{"customer_id":null}"#).unwrap(),
        format!(r#"{{"customer_id":null,{nulls}"#)
    );
    assert_eq!(
        one(&mut t, r#"{"customer_id":"9"}"#).unwrap(),
        format!(r#"{{"customer_id":"9",{nulls}"#)
    );
    assert_eq!(one(&mut t, "{}").unwrap(), format!("{{{nulls}"));
}

#[test]
fn a_field_missing_from_the_value_is_null() {
    seed_customers();
    testing::set_table("customers", b"8", Some(br#"{"id":"8","name":"ann"}"#));
    assert_eq!(
        run(&JOIN, r#"{"customer_id":"8"}"#).unwrap(),
        r#"{"customer_id":"8","customer_name":"ann","customer_age":null}"#
    );
}

#[test]
fn drop_writes_nothing_for_a_missing_key() {
    seed_customers();
    let mut t = enricher(&[JOIN[0], JOIN[1], JOIN[2], ("on_missing", "drop")]);
    assert_eq!(outputs(&mut t, r#"{"customer_id":"9"}"#).unwrap(), vec![]);
    assert_eq!(outputs(&mut t, r#"{"order_id":"1"}"#).unwrap(), vec![]);
    assert_eq!(one(&mut t, ORDERS[0]).unwrap(), ENRICHED[0]);
}

#[test]
fn route_writes_the_record_unchanged_to_its_topic() {
    seed_customers();
    let mut t = enricher(&[
        JOIN[0],
        JOIN[1],
        JOIN[2],
        ("on_missing", "route:orders.unmatched"),
    ]);
    let unmatched = r#"{"customer_id": "9", "order_id": "40", "price": 15.00}"#;
    let outs = outputs(&mut t, unmatched).unwrap();
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0].topic.as_deref(), Some("orders.unmatched"));
    assert_eq!(outs[0].value_str(), Some(unmatched));
    let keyless = outputs(&mut t, r#"{"customer_id": null}"#).unwrap();
    assert_eq!(keyless[0].topic.as_deref(), Some("orders.unmatched"));
    // Matched records go to the default output.
    assert_eq!(one(&mut t, ORDERS[0]).unwrap(), ENRICHED[0]);
}

#[test]
fn a_number_key_is_looked_up_as_its_json_text() {
    seed_customers();
    let mut t = enricher(&JOIN);
    assert_eq!(
        one(&mut t, r#"{"customer_id": 7, "order_id": "29"}"#).unwrap(),
        r#"{"customer_id":7,"order_id":"29","customer_name":"sue","customer_age":25}"#
    );
    // Its text exactly: `7.0` is another key.
    assert_eq!(
        one(&mut t, r#"{"customer_id": 7.0}"#).unwrap(),
        r#"{"customer_id":7.0,"customer_name":null,"customer_age":null}"#
    );
    testing::set_table("customers", b"-1e3", Some(br#"{"name":"odd"}"#));
    assert_eq!(
        one(&mut t, r#"{"customer_id":-1e3}"#).unwrap(),
        r#"{"customer_id":-1e3,"customer_name":"odd","customer_age":null}"#
    );
}

#[test]
fn a_key_that_is_not_a_string_or_a_number_is_an_error_naming_the_field() {
    seed_customers();
    let mut t = enricher(&JOIN);
    for key in ["true", "false", r#"{"id":"5"}"#, r#"["5"]"#] {
        let record = format!(r#"{{"customer_id": {key}}}"#);
        assert_eq!(
            one(&mut t, &record).unwrap_err(),
            format!("field `customer_id` is not a string or a number: {key}")
        );
    }
    assert_eq!(
        one(&mut t, r#"{"customer_id":"\ud800"}"#).unwrap_err(),
        r#"field `customer_id` is not a valid string: "\ud800""#
    );
}

#[test]
fn escaped_string_keys_and_names_are_decoded() {
    seed_customers();
    testing::set_table(
        "customers",
        "zoë".as_bytes(),
        Some(br#"{"n\u0061me":"zoe","age":9}"#),
    );
    // The key field's name and value are escaped; the table value's `name` too.
    assert_eq!(
        run(&JOIN, r#"{"customer\u005fid":"zo\u00eb"}"#).unwrap(),
        r#"{"customer\u005fid":"zo\u00eb","customer_name":"zoe","customer_age":9}"#
    );
}

#[test]
fn a_dotted_key_field_reads_nested_objects() {
    seed_customers();
    let mut t = enricher(&[JOIN[0], ("key_field", "customer.id"), JOIN[2]]);
    assert_eq!(
        one(
            &mut t,
            r#"{"customer": {"id": "5", "tier": 1}, "order_id": "17"}"#
        )
        .unwrap(),
        r#"{"customer":{"id": "5", "tier": 1},"order_id":"17","customer_name":"fred","customer_age":34}"#
    );
    let nulls = r#""customer_name":null,"customer_age":null}"#;
    assert_eq!(
        one(&mut t, r#"{"customer":null}"#).unwrap(),
        format!(r#"{{"customer":null,{nulls}"#)
    );
    assert_eq!(
        one(&mut t, r#"{"customer":{}}"#).unwrap(),
        format!(r#"{{"customer":{{}},{nulls}"#)
    );
    assert_eq!(
        one(&mut t, r#"{"id":"5"}"#).unwrap(),
        format!(r#"{{"id":"5",{nulls}"#)
    );
    assert_eq!(
        one(&mut t, r#"{"customer":"5"}"#).unwrap_err(),
        r#"field `customer.id`: `customer` is not an object: "5""#
    );
    let mut deep = enricher(&[JOIN[0], ("key_field", "a.b.c"), JOIN[2]]);
    assert_eq!(
        one(&mut deep, r#"{"a":{"b":{"c":2}}}"#).unwrap(),
        r#"{"a":{"b":{"c":2}},"customer_name":"bill","customer_age":51}"#
    );
    assert_eq!(
        one(&mut deep, r#"{"a":{"b":[1]}}"#).unwrap_err(),
        "field `a.b.c`: `a.b` is not an object: [1]"
    );
}

#[test]
fn copied_fields_replace_record_fields_of_the_same_name() {
    seed_customers();
    assert_eq!(
        run(
            &JOIN,
            r#"{"customer_name":"old","customer_id":"5","customer_age":1,"x":2}"#
        )
        .unwrap(),
        r#"{"customer_id":"5","x":2,"customer_name":"fred","customer_age":34}"#
    );
    // Also on a missing key: the nulls replace them.
    assert_eq!(
        run(&JOIN, r#"{"customer_name":"old","customer_id":"9"}"#).unwrap(),
        r#"{"customer_id":"9","customer_name":null,"customer_age":null}"#
    );
}

#[test]
fn values_keep_their_exact_bytes() {
    seed_customers();
    testing::set_table(
        "customers",
        b"1",
        Some(br#" { "name" : "caf\u00e9" , "age" : 34.0, "tags": [ 1, 2 ] } "#),
    );
    let config = [JOIN[0], JOIN[1], ("fields", "name,age,tags")];
    assert_eq!(
        run(
            &config,
            r#" { "customer_id" : "1" , "amount":1.0,"big":1e5,"n":{"a": [1, 2]} , "s":"a\"b" } "#
        )
        .unwrap(),
        r#"{"customer_id":"1","amount":1.0,"big":1e5,"n":{"a": [1, 2]},"s":"a\"b","name":"caf\u00e9","age":34.0,"tags":[ 1, 2 ]}"#
    );
}

#[test]
fn a_repeated_name_in_the_value_is_copied_once() {
    seed_customers();
    testing::set_table(
        "customers",
        b"1",
        Some(br#"{"name":"first","name":"second"}"#),
    );
    assert_eq!(
        run(&[JOIN[0], JOIN[1]], r#"{"customer_id":"1"}"#).unwrap(),
        r#"{"customer_id":"1","name":"first"}"#
    );
    assert_eq!(
        run(&JOIN, r#"{"customer_id":"1"}"#).unwrap(),
        r#"{"customer_id":"1","customer_name":"first","customer_age":null}"#
    );
}

#[test]
fn a_value_that_is_not_an_object_is_an_error_naming_table_and_key() {
    seed_customers();
    let mut t = enricher(&JOIN);
    for (value, message) in [
        (&b"[1,2]"[..], "is not a JSON object: [1,2]"),
        (br#""fred""#, r#"is not a JSON object: "fred""#),
        (b"34", "is not a JSON object: 34"),
        (
            br#"{"name":"fred""#,
            "is not valid JSON: EOF while parsing an object at line 1 column 14",
        ),
        (
            br#"{"name":"fred"} {}"#,
            "is not valid JSON: trailing characters at line 1 column 17",
        ),
        (
            b"\xff",
            "is not valid JSON: invalid utf-8 sequence of 1 bytes from index 0",
        ),
    ] {
        testing::set_table("customers", b"5", Some(value));
        assert_eq!(
            one(&mut t, ORDERS[2]).unwrap_err(),
            format!("table `customers`: the value of key `5` {message}")
        );
    }
}

#[test]
fn an_undeclared_table_is_an_error_with_the_sdks_message() {
    testing::clear_tables();
    let mut t = enricher(&JOIN);
    assert_eq!(
        one(&mut t, ORDERS[0]).unwrap_err(),
        "this pipeline declares no table named `customers`"
    );
}

#[test]
fn a_record_that_is_not_an_object_is_an_error() {
    seed_customers();
    let mut t = enricher(&JOIN);
    assert_eq!(
        one(&mut t, "[1,2]").unwrap_err(),
        "value is not a JSON object: [1,2]"
    );
    assert_eq!(
        one(&mut t, r#""5""#).unwrap_err(),
        r#"value is not a JSON object: "5""#
    );
    assert_eq!(
        one(&mut t, "not json").unwrap_err(),
        "value is not valid JSON: expected ident at line 1 column 2"
    );
    assert_eq!(
        one(&mut t, r#"{"customer_id":"5","x":}"#).unwrap_err(),
        "value is not valid JSON: expected value at line 1 column 24"
    );
    assert_eq!(
        one(&mut t, r#"{"customer_id":"5"} x"#).unwrap_err(),
        "value is not valid JSON: trailing characters at line 1 column 21"
    );
    assert_eq!(
        one(&mut t, r#"{"customer_id":"5","x":1"#).unwrap_err(),
        "value is not valid JSON: EOF while parsing an object at line 1 column 24"
    );
    assert_eq!(
        testing::process(&mut t, &Record::default())
            .unwrap_err()
            .to_string(),
        "record has no value"
    );
}

#[test]
fn mangled_input_never_panics_and_output_is_always_json() {
    seed_customers();
    testing::set_table(
        "customers",
        b"1",
        Some(br#"{"name":[1,{"a":"}"}],"age":-0.5e-3}"#),
    );
    let mut configs = vec![enricher(&JOIN), enricher(&[JOIN[0], JOIN[1]])];
    configs.push(enricher(&[JOIN[0], ("key_field", "c.id"), JOIN[2]]));
    let inputs = [
        ORDERS[0],
        r#"{"customer_id":"1","c":{"id":"1"},"e":"\"\\\u0041","n":[{"x":{}},[],-1.5E+3,true,null]}"#,
        "{\"customer_id\":\"1\",\"é\":\"ü\"}",
    ];
    for input in inputs {
        for t in &mut configs {
            // Every prefix, and every byte replaced by a structural character, parses or fails.
            for end in 0..=input.len() {
                let _ = testing::process(t, &Record::from_value(&input.as_bytes()[..end]));
            }
            for at in 0..input.len() {
                for byte in [b'"', b'{', b'}', b',', b':', b'\\', b' ', 0xc3] {
                    let mut bytes = input.as_bytes().to_vec();
                    bytes[at] = byte;
                    if let Ok(outs) = testing::process(t, &Record::from_value(&bytes)) {
                        for out in outs.iter().filter(|o| o.topic.is_none()) {
                            // Whatever it accepts, it writes valid JSON.
                            let _: serde_json::Value =
                                serde_json::from_slice(out.value.as_deref().unwrap())
                                    .unwrap_or_else(|e| panic!("{e}: {:?}", out.value_str()));
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn bad_config_is_refused_by_key() {
    assert_eq!(
        config_error(&[("key_field", "customer_id")]),
        "config key `table` is required"
    );
    assert_eq!(
        config_error(&[("table", "customers")]),
        "config key `key_field` is required"
    );
    assert_eq!(
        config_error(&[("table", ""), JOIN[1]]),
        "config key `table` must not be empty"
    );
    assert_eq!(
        config_error(&[JOIN[0], ("key_field", " ")]),
        "config key `key_field` must not be empty"
    );
    assert!(
        config_error(&[JOIN[0], JOIN[1], ("feilds", "name")])
            .starts_with("unknown config key `feilds`")
    );
    assert_eq!(
        config_error(&[JOIN[0], ("key_field", "customer..id")]),
        "config key `key_field`: `customer..id` has an empty name between dots"
    );
    for bad in ["skip", "route:", "route: ", "Null"] {
        assert_eq!(
            config_error(&[JOIN[0], JOIN[1], ("on_missing", bad)]),
            format!(
                "config key `on_missing`: invalid value `{bad}`, expected null, drop or route:<topic>"
            )
        );
    }
    for (fields, message) in [
        (
            "",
            "config key `fields` must not be empty; leave it unset to copy every field",
        ),
        (
            "name,,age",
            "config key `fields`: empty entry in `name,,age`",
        ),
        ("name,", "config key `fields`: empty entry in `name,`"),
        (
            ":x",
            "config key `fields`: `:x` has no field name before `:`",
        ),
        (
            "name:",
            "config key `fields`: `name:` has no new name after `:`",
        ),
        (
            "a:b:c",
            "config key `fields`: `a:b:c` has more than one `:`",
        ),
        (
            "name,name",
            "config key `fields`: two fields are written as `name`",
        ),
        (
            "name:x,age:x",
            "config key `fields`: two fields are written as `x`",
        ),
    ] {
        assert_eq!(
            config_error(&[JOIN[0], JOIN[1], ("fields", fields)]),
            message
        );
    }
}

#[test]
fn config_is_parsed_once() {
    let t = enricher(&[
        JOIN[0],
        ("key_field", "customer.id"),
        ("fields", "name:customer_name, age"),
        ("prefix", "c_"),
        ("on_missing", "route: orders.unmatched"),
    ]);
    assert_eq!(t.key_path, ["customer", "id"]);
    let copies: Vec<_> = t
        .copies
        .iter()
        .flatten()
        .map(|c| (c.source.as_str(), c.target.as_str()))
        .collect();
    assert_eq!(copies, [("name", "customer_name"), ("age", "c_age")]);
    assert_eq!(t.copies.as_ref().unwrap()[1].target_key, br#""c_age":"#);
    assert_eq!(
        t.on_missing,
        OnMissing::Route("orders.unmatched".to_string())
    );
    assert_eq!(enricher(&JOIN).on_missing, OnMissing::Null);
    assert_eq!(
        enricher(&[JOIN[0], JOIN[1], ("on_missing", "null")]).on_missing,
        OnMissing::Null
    );
}
