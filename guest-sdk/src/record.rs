use crate::Error;
use serde::de::DeserializeOwned;

/// One record header. Kafka allows repeated names and null values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The header's name.
    pub name: &'a str,
    /// The header's value; `None` for a null value.
    pub value: Option<&'a [u8]>,
}

/// A record read from Kafka. It borrows the batch it arrived in: copy out what you keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Record<'a> {
    /// The topic it was read from.
    pub topic: &'a str,
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// Its timestamp, milliseconds since the Unix epoch, when it has one.
    pub timestamp: Option<i64>,
    /// Its key; `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// Its value; `None` for a null value (a tombstone).
    pub value: Option<&'a [u8]>,
    /// Its headers, in order.
    pub headers: &'a [Header<'a>],
}

impl<'a> Record<'a> {
    /// A record with only a value, for tests.
    pub fn from_value(value: &'a [u8]) -> Self {
        Record {
            value: Some(value),
            ..Record::default()
        }
    }

    /// The value as UTF-8 text, or an error saying why not.
    pub fn value_str(&self) -> Result<&'a str, Error> {
        let value = self
            .value
            .ok_or_else(|| Error::new("record has no value"))?;
        std::str::from_utf8(value).map_err(|e| Error::new(format!("value is not UTF-8: {e}")))
    }

    /// The value parsed as JSON into `T` (`serde_json::Value` for free-form editing).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let value = self
            .value
            .ok_or_else(|| Error::new("record has no value"))?;
        serde_json::from_slice(value)
            .map_err(|e| Error::new(format!("value is not valid JSON: {e}")))
    }

    /// The value of the first header called `name`, if any.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.value)
    }
}
