//! Helpers for rewriting JSON records field by field, copying what does not change byte for
//! byte instead of parsing and re-serialising it.
//!
//! ```
//! use serde::de::{Deserializer, MapAccess, Visitor};
//! use serde_json::value::RawValue;
//! use sluice_sdk::json::{write_key, ObjectKey};
//!
//! /// Upper-cases the keys of a JSON object, leaving every value's bytes as they were.
//! struct UpperKeys<'a>(&'a mut Vec<u8>);
//!
//! impl<'de> Visitor<'de> for UpperKeys<'_> {
//!     type Value = ();
//!     fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         f.write_str("a JSON object")
//!     }
//!     fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
//!         self.0.push(b'{');
//!         let mut first = true;
//!         while let Some(key) = map.next_key::<ObjectKey<'de>>()? {
//!             let value: &RawValue = map.next_value()?;
//!             if !std::mem::take(&mut first) {
//!                 self.0.push(b',');
//!             }
//!             write_key(self.0, &key.as_str().to_uppercase());
//!             self.0.extend_from_slice(value.get().as_bytes());
//!         }
//!         self.0.push(b'}');
//!         Ok(())
//!     }
//! }
//!
//! let mut out = Vec::new();
//! let mut input = serde_json::Deserializer::from_str(r#"{"price": 1.50, "sku": "A-1"}"#);
//! input.deserialize_map(UpperKeys(&mut out)).unwrap();
//! assert_eq!(out, br#"{"PRICE":1.50,"SKU":"A-1"}"#);
//! ```

use serde::de::{Deserialize, Deserializer, Visitor};
use std::borrow::Cow;

/// An object key as read from the input: borrowed unless it had escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey<'a>(pub Cow<'a, str>);

impl ObjectKey<'_> {
    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Appends `"key":` as it was read: a borrowed key had no escapes, so needs none.
    pub fn write(&self, out: &mut Vec<u8>) {
        match &self.0 {
            Cow::Borrowed(key) => {
                out.push(b'"');
                out.extend_from_slice(key.as_bytes());
                out.extend_from_slice(b"\":");
            }
            Cow::Owned(key) => write_key(out, key),
        }
    }
}

impl<'de> Deserialize<'de> for ObjectKey<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = ObjectKey<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<ObjectKey<'de>, E> {
                Ok(ObjectKey(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<ObjectKey<'de>, E> {
                Ok(ObjectKey(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(Visit)
    }
}

/// Appends `"key":`, escaping the key as JSON requires.
pub fn write_key(out: &mut Vec<u8>, key: &str) {
    serde_json::to_writer(&mut *out, key).expect("writing a string to a Vec cannot fail");
    out.push(b':');
}

/// At most the first 80 characters of `text`, for error messages that quote a value.
pub fn excerpt(text: &str) -> &str {
    match text.char_indices().nth(80) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_copied_verbatim_or_escaped() {
        let key: ObjectKey<'_> = serde_json::from_str(r#""plain""#).unwrap();
        assert!(matches!(key.0, Cow::Borrowed("plain")));
        let escaped: ObjectKey<'_> = serde_json::from_str(r#""caf\u00e9 \"q\"""#).unwrap();
        assert_eq!(escaped.as_str(), "café \"q\"");
        let mut out = Vec::new();
        key.write(&mut out);
        escaped.write(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#""plain":"café \"q\"":"#);
        assert_eq!(excerpt(&"x".repeat(100)).len(), 80);
        assert_eq!(excerpt("é"), "é");
    }
}
