//! Enricher: joins each JSON record with the latest value of its key in a lookup table, as a
//! ksqlDB stream–table `LEFT JOIN` does, and appends the chosen fields of that value to the record.
//!
//! With `table = customers`, `key_field = customer_id` and
//! `fields = name:customer_name,age:customer_age`, the order
//! `{"customer_id": "2", "order_id": "13", "price": 50.50}` and the table value
//! `{"id":"2","name":"bill","age":51}` under key `2` give
//! `{"customer_id":"2","order_id":"13","price":50.50,"customer_name":"bill","customer_age":51}`:
//! the record's fields keep their order and their exact bytes, the copied fields come last. See
//! the crate's README for the configuration.

use serde_json::value::RawValue;
use sluice_sdk::json::{self, ObjectWriter, ReadError, excerpt};
use sluice_sdk::{Config, Error, Record, Transform, Writer, tables};
use std::borrow::Cow;

/// Configuration keys, with their defaults in [`Enricher::from_config`].
const KEYS: &[&str] = &["table", "key_field", "fields", "prefix", "on_missing"];

/// What happens to a record whose key is not in the table, or whose key field is missing or null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnMissing {
    /// Write it with every configured field set to null, as a `LEFT JOIN` does (the default).
    Null,
    /// Write nothing: an inner join.
    Drop,
    /// Write it unchanged to this output topic.
    Route(String),
}

/// One field copied from the table's value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Copied {
    /// Its name in the table's value.
    source: String,
    /// Its name in the output.
    target: String,
    /// `target` as a JSON object key with its colon, ready to append: `"customer_name":`.
    target_key: Vec<u8>,
}

/// The enricher, built once from configuration.
#[derive(Debug, Clone)]
pub struct Enricher {
    table: String,
    /// `key_field` as configured, for messages.
    key_field: String,
    /// `key_field` split at its dots: the names to follow down nested objects.
    key_path: Vec<String>,
    /// The fields to copy, in order; `None` copies every field of the table's value.
    copies: Option<Vec<Copied>>,
    /// The prefix for names copied from the table's value without `fields`.
    prefix: String,
    /// `prefix` escaped as the inside of a JSON string.
    prefix_json: String,
    on_missing: OnMissing,
    /// Scratch space, kept between records: the fields of the record being handled...
    record_fields: Vec<Field>,
    /// ... and of its table value.
    table_fields: Vec<Field>,
}

impl Enricher {
    /// Builds the enricher from `config`, refusing unknown keys and bad values by name.
    pub fn from_config(config: &Config) -> Result<Self, Error> {
        config.allow_only(KEYS)?;
        let table = non_empty(config, "table")?.to_string();
        let key_field = non_empty(config, "key_field")?.to_string();
        let key_path: Vec<String> = key_field.split('.').map(str::to_string).collect();
        if key_path.iter().any(String::is_empty) {
            return Err(Error::new(format!(
                "config key `key_field`: `{key_field}` has an empty name between dots"
            )));
        }
        let prefix = config.get("prefix").unwrap_or_default().to_string();
        let prefix_json = json_string(&prefix);
        let prefix_json = prefix_json[1..prefix_json.len() - 1].to_string();
        let copies = config
            .get("fields")
            .map(|spec| parse_fields(spec, &prefix))
            .transpose()?;
        let on_missing = match config.get("on_missing") {
            None | Some("null") => OnMissing::Null,
            Some("drop") => OnMissing::Drop,
            Some(other) => match other.strip_prefix("route:").map(str::trim) {
                Some(topic) if !topic.is_empty() => OnMissing::Route(topic.to_string()),
                _ => {
                    return Err(Error::new(format!(
                        "config key `on_missing`: invalid value `{other}`, expected null, drop or route:<topic>"
                    )));
                }
            },
        };
        Ok(Enricher {
            table,
            key_field,
            key_path,
            copies,
            prefix,
            prefix_json,
            on_missing,
            record_fields: Vec::new(),
            table_fields: Vec::new(),
        })
    }

    /// The lookup key of the record whose fields are in `record_fields`: `None` when the key
    /// field is missing or null, or an error when it is neither a string nor a number.
    fn key<'t>(&self, record: &'t str) -> Result<Option<Cow<'t, [u8]>>, Error> {
        let Some(mut raw) = find(record, &self.record_fields, &self.key_path[0]) else {
            return Ok(None);
        };
        let mut nested = Vec::new();
        for (depth, name) in self.key_path.iter().enumerate().skip(1) {
            match raw.as_bytes().first() {
                Some(b'n') => return Ok(None), // null
                Some(b'{') => {}
                _ => {
                    return Err(Error::new(format!(
                        "field `{}`: `{}` is not an object: {}",
                        self.key_field,
                        self.key_path[..depth].join("."),
                        excerpt(raw)
                    )));
                }
            }
            nested.clear();
            if index_fields(raw, &mut nested).is_err() {
                // Cannot happen: `raw` was checked to be a JSON object when its parent was read.
                return Err(Error::new(format!(
                    "field `{}`: malformed object",
                    self.key_field
                )));
            }
            match find(raw, &nested, name) {
                Some(value) => raw = value,
                None => return Ok(None),
            }
        }
        match raw.as_bytes().first() {
            Some(b'n') => Ok(None),
            Some(b'"') => match json::string_text(raw) {
                Ok(Cow::Borrowed(text)) => Ok(Some(Cow::Borrowed(text.as_bytes()))),
                Ok(Cow::Owned(text)) => Ok(Some(Cow::Owned(text.into_bytes()))),
                Err(_) => Err(Error::new(format!(
                    "field `{}` is not a valid string: {}",
                    self.key_field,
                    excerpt(raw)
                ))),
            },
            Some(b'-' | b'0'..=b'9') => Ok(Some(Cow::Borrowed(raw.as_bytes()))),
            _ => Err(Error::new(format!(
                "field `{}` is not a string or a number: {}",
                self.key_field,
                excerpt(raw)
            ))),
        }
    }

    /// Whether the record's field `name` is replaced by a copied field: by one of `fields`, or
    /// without `fields`, by a field of the table's value `table`.
    fn replaced(&self, name: &str, table: Option<&str>) -> bool {
        match (&self.copies, table) {
            (Some(copies), _) => copies.iter().any(|c| c.target == name),
            (None, Some(table)) => name
                .strip_prefix(self.prefix.as_str())
                .is_some_and(|rest| self.table_fields.iter().any(|f| f.name(table) == rest)),
            (None, None) => false,
        }
    }

    /// Appends the enriched object to `out`: the record's fields but those replaced, then the
    /// copied fields. `table` is the matched table value (its fields in `table_fields`), or
    /// `None` for a missing key: then `fields` are written as null.
    fn write_enriched(&self, record: &str, table: Option<&str>, out: &mut Vec<u8>) {
        let mut object = ObjectWriter::new(out);
        for field in &self.record_fields {
            if !self.replaced(&field.name(record), table) {
                object
                    .field_as_written(field.key(record))
                    .extend_from_slice(field.value(record).as_bytes());
            }
        }
        match (&self.copies, table) {
            (Some(copies), table) => {
                for copy in copies {
                    let value =
                        table.and_then(|table| find(table, &self.table_fields, &copy.source));
                    let out = object.field_unwritten();
                    out.extend_from_slice(&copy.target_key);
                    out.extend_from_slice(value.unwrap_or("null").as_bytes());
                }
            }
            (None, Some(table)) => {
                for (i, field) in self.table_fields.iter().enumerate() {
                    let name = field.name(table);
                    // A repeated name would repeat the output key: the first one counts.
                    if self.table_fields[..i]
                        .iter()
                        .any(|earlier| earlier.name(table) == name)
                    {
                        continue;
                    }
                    let out = object.field_unwritten();
                    out.push(b'"');
                    out.extend_from_slice(self.prefix_json.as_bytes());
                    out.extend_from_slice(&field.key(table).as_bytes()[1..]); // the rest of the key, with its quote
                    out.push(b':');
                    out.extend_from_slice(field.value(table).as_bytes());
                }
            }
            (None, None) => {}
        }
        object.end();
    }
}

/// Parses `fields`: comma-separated `source:target` or `source` (copied as `prefix` + `source`).
fn parse_fields(spec: &str, prefix: &str) -> Result<Vec<Copied>, Error> {
    let refuse = |why: String| Error::new(format!("config key `fields`: {why}"));
    if spec.trim().is_empty() {
        return Err(Error::new(
            "config key `fields` must not be empty; leave it unset to copy every field",
        ));
    }
    let mut copies: Vec<Copied> = Vec::new();
    for entry in spec.split(',').map(str::trim) {
        if entry.is_empty() {
            return Err(refuse(format!("empty entry in `{spec}`")));
        }
        let (source, target) = match entry.split_once(':') {
            Some((source, target)) => (source.trim(), target.trim().to_string()),
            None => (entry, format!("{prefix}{entry}")),
        };
        if source.is_empty() {
            return Err(refuse(format!("`{entry}` has no field name before `:`")));
        }
        if target.is_empty() {
            return Err(refuse(format!("`{entry}` has no new name after `:`")));
        }
        if target.contains(':') {
            return Err(refuse(format!("`{entry}` has more than one `:`")));
        }
        if copies.iter().any(|c| c.target == target) {
            return Err(refuse(format!("two fields are written as `{target}`")));
        }
        let mut target_key = json_string(&target).into_bytes();
        target_key.push(b':');
        copies.push(Copied {
            source: source.to_string(),
            target,
            target_key,
        });
    }
    Ok(copies)
}

fn non_empty<'c>(config: &'c Config, key: &str) -> Result<&'c str, Error> {
    let value = config.require(key)?;
    if value.trim().is_empty() {
        return Err(Error::new(format!("config key `{key}` must not be empty")));
    }
    Ok(value)
}

impl Transform for Enricher {
    fn init(config: &Config) -> Result<Self, Error> {
        Enricher::from_config(config)
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Writer<'_>) -> Result<(), Error> {
        let value = record
            .value
            .ok_or_else(|| Error::new("record has no value"))?;
        let text = parse_object(value, &mut self.record_fields)?;
        let key = self.key(text)?;
        let found = match &key {
            Some(key) => tables::lookup(&self.table, key)?,
            None => None,
        };
        let table = match (&found, &key) {
            (Some(found), Some(key)) => {
                Some(parse_object(found, &mut self.table_fields).map_err(|e| {
                    e.describe(&format!(
                        "table `{}`: the value of key `{}`",
                        self.table,
                        String::from_utf8_lossy(key)
                    ))
                })?)
            }
            _ => None,
        };
        if table.is_none() {
            match &self.on_missing {
                OnMissing::Null => {}
                OnMissing::Drop => return Ok(()),
                OnMissing::Route(topic) => return out.write_to(topic, value),
            }
        }
        out.write_with(|buf| {
            self.write_enriched(text, table, buf);
            Ok(())
        })
    }
}

sluice_sdk::export!(Enricher);

/// Where one field of a JSON object lies in the object's text: its key, quotes included, and
/// its value, as byte ranges. Both are exactly as written; whitespace around them is not kept.
#[derive(Debug, Clone, Copy)]
struct Field {
    key: (usize, usize),
    value: (usize, usize),
}

impl Field {
    fn key<'t>(&self, text: &'t str) -> &'t str {
        &text[self.key.0..self.key.1]
    }

    fn value<'t>(&self, text: &'t str) -> &'t str {
        &text[self.value.0..self.value.1]
    }

    /// The key's text, escapes decoded.
    fn name<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let raw = self.key(text);
        // A key with an escape that does not decode (a lone surrogate) matches nothing.
        json::string_text(raw).unwrap_or(Cow::Borrowed(raw))
    }
}

/// The value of the first field called `name` among `fields` of the object `text`.
fn find<'t>(text: &'t str, fields: &[Field], name: &str) -> Option<&'t str> {
    fields
        .iter()
        .find(|f| f.name(text) == name)
        .map(|f| f.value(text))
}

/// Reads `value`, which must be exactly one JSON object, and lists its fields in `fields`.
fn parse_object<'v>(value: &'v [u8], fields: &mut Vec<Field>) -> Result<&'v str, ReadError> {
    let text = std::str::from_utf8(value)?;
    fields.clear();
    index_fields(text, fields)?;
    Ok(text)
}

/// Appends where the fields of the JSON object `text` lie to `fields`. Keys are read as
/// written, so that they are copied with their escapes.
fn index_fields(text: &str, fields: &mut Vec<Field>) -> Result<(), ReadError> {
    // Positions rather than slices, so that the list outlives the text and is reused.
    let range = |part: &str| {
        let start = part.as_ptr() as usize - text.as_ptr() as usize;
        (start, start + part.len())
    };
    json::for_each_field(text, |key: &RawValue, value: &RawValue| {
        fields.push(Field {
            key: range(key.get()),
            value: range(value.get()),
        });
        Ok(())
    })
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serialises")
}

#[cfg(test)]
mod tests;
