//! PII stripper: finds personal data in the string values of JSON records (email addresses,
//! phone numbers, payment card numbers, US social security numbers, IPv4 and IPv6 addresses)
//! and masks it, replaces it with a salted pseudonym, or drops the field that held it. Named
//! fields can also be dropped or masked whole.
//!
//! `{"id":1001,"note":"call +44 20 7946 0958 or mail a@b.com"}` becomes
//! `{"id":1001,"note":"call [PHONE] or mail [EMAIL]"}`: only the detected text is replaced,
//! numbers and every other value keep their exact bytes, and fields keep their order. See the
//! crate's README for the configuration and the limits of each detector.

mod detect;

use hmac::{Hmac, Mac};
use serde_json::value::RawValue;
use sha2::Sha256;
use sluice_sdk::json::{self, ArrayWriter, ObjectKey, ObjectWriter};
use sluice_sdk::{Config, Error, OutputRecord, Record, Transform, Writer};

use detect::{Detectors, Kind, canonical};

/// Configuration keys, with their defaults in [`Stripper::from_config`].
const KEYS: &[&str] = &[
    "drop", "mask", "action", "salt", "email", "phone", "card", "ssn", "ipv4", "ipv6",
];

/// What a field listed in `mask` becomes, whatever its type.
pub const REDACTED: &str = "[REDACTED]";

/// How deeply objects and arrays may nest; as serde_json's own limit.
pub const MAX_DEPTH: usize = 128;

/// How many hex digits of the HMAC a pseudonym keeps (64 bits).
pub const PSEUDONYM_HEX_DIGITS: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// What happens to detected PII.
enum Action {
    /// It is replaced by its kind's label: `[EMAIL]` (the default).
    Mask,
    /// It is replaced by its kind's label and a pseudonym, `[EMAIL:078760c0aa2f7bee]` for
    /// `a@b.com` with the salt `s`: the first 16 hex digits of HMAC-SHA256 keyed with the salt,
    /// over the [canonical] form of the value.
    Hash(HmacSha256),
    /// The field (or array element) holding it is removed.
    Drop,
}

/// What becomes of one string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scanned {
    /// It holds no PII: it is kept as it was, byte for byte.
    Clean,
    /// It held PII, replaced in this text.
    Rewritten(String),
    /// It held PII and `action` is `drop`.
    Drop,
}

/// The stripper, built once from configuration.
pub struct Stripper {
    detectors: Detectors,
    action: Action,
    drop: Vec<Vec<String>>,
    mask: Vec<Vec<String>>,
}

impl Stripper {
    /// Builds the stripper from `config`, refusing unknown keys and bad values by name.
    pub fn from_config(config: &Config) -> Result<Self, Error> {
        config.allow_only(KEYS)?;
        let mut enabled = Vec::new();
        for kind in Kind::ALL {
            if config.parse::<bool>(kind.key())?.unwrap_or(true) {
                enabled.push(kind);
            }
        }
        let action = match config.choice("action", &["mask", "hash", "drop"])? {
            Some("hash") => {
                // No default: a well-known salt would let anyone hash every phone number (there
                // are only so many) and read the pseudonyms back.
                let salt = config.get("salt").ok_or_else(|| {
                    Error::new("config key `salt` is required when action = hash: a secret, the same in every deployment whose pseudonyms must match")
                })?;
                if salt.is_empty() {
                    return Err(Error::new("config key `salt` must not be empty"));
                }
                Action::Hash(
                    HmacSha256::new_from_slice(salt.as_bytes())
                        .expect("HMAC takes keys of any length"),
                )
            }
            Some("drop") => Action::Drop,
            _ => Action::Mask,
        };
        if config.get("salt").is_some() && !matches!(action, Action::Hash(_)) {
            return Err(Error::new(
                "config key `salt` is only used when action = hash",
            ));
        }
        let drop = field_paths(config, "drop")?;
        let mask = field_paths(config, "mask")?;
        if let Some(both) = mask.iter().find(|path| drop.contains(path)) {
            return Err(Error::new(format!(
                "config key `mask`: field `{}` is also in `drop`",
                both.join(".")
            )));
        }
        Ok(Stripper {
            detectors: Detectors::new(&enabled),
            action,
            drop,
            mask,
        })
    }

    /// Finds the PII in `text` and says what becomes of it.
    pub fn strip_text(&self, text: &str) -> Scanned {
        if self.detectors.is_empty() {
            return Scanned::Clean;
        }
        let found = self.detectors.find(text);
        if found.is_empty() {
            return Scanned::Clean;
        }
        let mut out = String::with_capacity(text.len() + 8 * found.len());
        let mut last = 0;
        for f in &found {
            out.push_str(&text[last..f.start]);
            out.push('[');
            out.push_str(f.kind.label());
            match &self.action {
                Action::Mask => {}
                Action::Hash(mac) => {
                    out.push(':');
                    out.push_str(&pseudonym(mac, f.kind, &text[f.start..f.end]));
                }
                Action::Drop => return Scanned::Drop,
            }
            out.push(']');
            last = f.end;
        }
        out.push_str(&text[last..]);
        Scanned::Rewritten(out)
    }

    /// Strips one record value, which must be JSON, appending the result to `out`. Returns
    /// `false`, with nothing appended, when the value is a string dropped because of its PII.
    pub fn strip_value(&self, value: &[u8], out: &mut Vec<u8>) -> Result<bool, Error> {
        let text = std::str::from_utf8(value)
            .map_err(|e| Error::new(format!("value is not UTF-8: {e}")))?;
        // The walk of an object or array reads all of it with serde_json, which stops at what
        // is not JSON with the error it would give here; anything else is checked first. One
        // pass fewer over most records: the PII stripper 10% faster on the tz outputs.
        let text = match text.as_bytes().first() {
            Some(b'{' | b'[') => text,
            _ => serde_json::from_str::<&RawValue>(text)
                .map_err(|e| Error::new(format!("value is not valid JSON: {e}")))?
                .get(),
        };
        let start = out.len();
        let written = self.value(text, &mut Vec::new(), 0, out);
        if !matches!(written, Ok(true)) {
            out.truncate(start);
        }
        written
    }

    /// Writes the JSON value `text`, found at `path`, to `out`; `false` (with nothing written)
    /// when it is a string to drop.
    fn value<'a>(
        &self,
        text: &'a str,
        path: &mut Vec<ObjectKey<'a>>,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<bool, Error> {
        match text.as_bytes()[0] {
            b'{' | b'[' if depth == MAX_DEPTH => Err(Error::new(format!(
                "value is nested deeper than {MAX_DEPTH} levels"
            ))),
            b'{' => {
                let mut object = ObjectWriter::new(out);
                json::for_each_field(text, |key, raw| {
                    path.push(key);
                    let result = self.member(&mut object, raw, path, depth + 1);
                    path.pop();
                    result
                })?;
                object.end();
                Ok(true)
            }
            b'[' => {
                let mut array = ArrayWriter::new(out);
                json::for_each_element(text, |raw| {
                    let start = array.checkpoint();
                    // A dropped element is removed: the ones after it move up.
                    if !self.value(raw.get(), path, depth + 1, array.element())? {
                        array.rollback(start);
                    }
                    Ok(())
                })?;
                array.end();
                Ok(true)
            }
            b'"' => {
                let decoded = json::string_text(text)
                    .map_err(|e| Error::new(format!("value is not valid JSON: {e}")))?;
                match self.strip_text(&decoded) {
                    // As it was written, escapes included.
                    Scanned::Clean => out.extend_from_slice(text.as_bytes()),
                    Scanned::Rewritten(new) => json::write_string(out, &new),
                    Scanned::Drop => return Ok(false),
                }
                Ok(true)
            }
            // Numbers, booleans and null: never scanned, copied as written (`1.0` stays `1.0`).
            _ => {
                out.extend_from_slice(text.as_bytes());
                Ok(true)
            }
        }
    }

    /// Writes the field at `path` (its key is the last) to `object`, unless it is dropped.
    /// `path` lists the keys leading to it; arrays add nothing, so `items.sku` reaches the `sku`
    /// of every element of `items`.
    fn member<'a>(
        &self,
        object: &mut ObjectWriter<'_>,
        raw: &'a RawValue,
        path: &mut Vec<ObjectKey<'a>>,
        depth: usize,
    ) -> Result<(), Error> {
        if listed(&self.drop, path) {
            return Ok(());
        }
        let start = object.checkpoint();
        let out = object.field_as_read(path.last().expect("the field's key was pushed"));
        if listed(&self.mask, path) {
            json::write_string(out, REDACTED);
        } else if !self.value(raw.get(), path, depth, out)? {
            object.rollback(start);
        }
        Ok(())
    }
}

/// The pseudonym of a find: the first [`PSEUDONYM_HEX_DIGITS`] hex digits of HMAC-SHA256,
/// keyed with the salt, over its [canonical] form.
fn pseudonym(mac: &HmacSha256, kind: Kind, text: &str) -> String {
    let mut mac = mac.clone();
    mac.update(canonical(kind, text).as_bytes());
    let digest = mac.finalize().into_bytes();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    digest[..PSEUDONYM_HEX_DIGITS / 2]
        .iter()
        .flat_map(|b| {
            [
                HEX[usize::from(b >> 4)] as char,
                HEX[usize::from(b & 15)] as char,
            ]
        })
        .collect()
}

/// Parses a comma-separated list of dotted field paths, `ssn, customer.email`.
fn field_paths(config: &Config, key: &str) -> Result<Vec<Vec<String>>, Error> {
    let list = config.get(key).unwrap_or("");
    if list.trim().is_empty() {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|item| {
            let item = item.trim();
            let path: Vec<String> = item.split('.').map(str::to_string).collect();
            if path.iter().any(String::is_empty) {
                return Err(Error::new(format!(
                    "config key `{key}`: invalid field path `{item}`: expected names separated by dots, such as `customer.email`"
                )));
            }
            Ok(path)
        })
        .collect()
}

/// Whether `path` is one of `paths`.
fn listed(paths: &[Vec<String>], path: &[ObjectKey<'_>]) -> bool {
    paths
        .iter()
        .any(|p| p.len() == path.len() && p.iter().zip(path).all(|(a, b)| a == b.as_str()))
}

/// The transform: one [`Stripper`] per instance.
pub struct PiiStripper(Stripper);

impl Transform for PiiStripper {
    fn init(config: &Config) -> Result<Self, Error> {
        Stripper::from_config(config).map(PiiStripper)
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Writer<'_>) -> Result<(), Error> {
        let Some(value) = record.value else {
            // A tombstone holds nothing to strip, and still deletes its key downstream.
            return out.write_record(OutputRecord::new(None));
        };
        let mut dropped = false;
        let written = out.write_with(|buf| {
            if self.0.strip_value(value, buf)? {
                return Ok(());
            }
            // A failing build writes nothing: the record is filtered out.
            dropped = true;
            Err(Error::new("the whole value is a string holding PII"))
        });
        if dropped { Ok(()) } else { written }
    }
}

sluice_sdk::export!(PiiStripper);

#[cfg(test)]
mod tests;
