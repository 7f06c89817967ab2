//! Rewrite JSON records field by field, copying what does not change byte for byte instead of
//! parsing and re-serialising it.
//!
//! One pass over the input reads each field of an object as its key and its value's raw text;
//! an [`ObjectWriter`] writes the output object, placing braces and commas. A field kept as it
//! was costs a copy of its bytes: numbers such as `1.50` or `1e5` stay exactly as written, and
//! so do nested objects and escaped strings.
//!
//! [`rewrite_object`] is the whole loop for the common case: a transform that replaces, renames
//! or drops some fields of a JSON object is a few lines.
//!
//! ```
//! use sluice_sdk::json;
//! use sluice_sdk::{Config, Error, Record, Transform, Writer};
//!
//! /// Upper-cases `name`, drops `secret`, and keeps every other field's bytes as they were.
//! struct Shout;
//!
//! impl Transform for Shout {
//!     fn init(_: &Config) -> Result<Self, Error> {
//!         Ok(Shout)
//!     }
//!
//!     fn process(&mut self, record: &Record<'_>, out: &mut Writer<'_>) -> Result<(), Error> {
//!         let value = record.value.ok_or_else(|| Error::new("record has no value"))?;
//!         out.write_with(|buf| {
//!             json::rewrite_object(value, buf, |object, key, value| {
//!                 match key.as_str() {
//!                     "name" => {
//!                         let name = json::string_text(value.get())
//!                             .map_err(|_| Error::new("field `name` is not a string"))?;
//!                         json::write_string(object.field("name"), &name.to_uppercase());
//!                     }
//!                     "secret" => {} // not written: the field is dropped
//!                     _ => object.keep(&key, value),
//!                 }
//!                 Ok(())
//!             })
//!         })
//!     }
//! }
//!
//! let mut shout = sluice_sdk::testing::init::<Shout>(&[]).unwrap();
//! let input = Record::from_value(br#"{"price": 1.50, "name": "ada", "secret": 7, "tags": [ 1 ]}"#);
//! let outputs = sluice_sdk::testing::process(&mut shout, &input).unwrap();
//! assert_eq!(outputs[0].value_str(), Some(r#"{"price":1.50,"name":"ADA","tags":[ 1 ]}"#));
//!
//! let not_an_object = sluice_sdk::testing::process(&mut shout, &Record::from_value(b"[1]"));
//! assert_eq!(not_an_object.unwrap_err().to_string(), "value is not a JSON object: [1]");
//! ```
//!
//! For more than that (fields added after the last one, nested objects, arrays), use the parts:
//! [`for_each_field`] and [`for_each_element`] read, [`ObjectWriter`] and [`ArrayWriter`]
//! write. Whitespace between fields is not kept; whitespace inside a kept value is.

use crate::Error;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// An object key as read from the input: borrowed unless it had escapes, which are decoded.
///
/// To keep keys exactly as written, escapes included, read them as `&RawValue` instead (see
/// [`for_each_field`]) and write them with [`ObjectWriter::field_as_written`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey<'a>(pub Cow<'a, str>);

impl ObjectKey<'_> {
    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Appends `"key":` as it was read: a borrowed key had no escapes, so needs none.
    #[inline]
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
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
#[inline]
pub fn write_key(out: &mut Vec<u8>, key: &str) {
    write_string(out, key);
    out.push(b':');
}

/// Appends `text` as a JSON string, quoted and escaped.
pub fn write_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("writing a string to a Vec cannot fail");
}

/// The text of the JSON string `raw` (the value as written, quotes included, such as
/// [`RawValue::get`] gives), borrowed unless it has escapes. An error when `raw` is not a
/// string, or has an escape that does not decode (a lone surrogate).
#[inline]
pub fn string_text(raw: &str) -> Result<Cow<'_, str>, serde_json::Error> {
    // Most strings have no escapes: then the text is what lies between the quotes, if nothing
    // there needs an escape. Cheaper than setting up a parser, which is what it would find.
    if let Some(text) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"'))
        && !needs_escape(text.as_bytes())
    {
        return Ok(Cow::Borrowed(text));
    }
    match serde_json::from_str::<&str>(raw) {
        Ok(text) => Ok(Cow::Borrowed(text)),
        // It has escapes, which need a string of its own, or it is not a string at all.
        Err(_) => serde_json::from_str::<String>(raw).map(Cow::Owned),
    }
}

/// Whether `text` holds a byte that a JSON string must escape (`"`, `\` or a control
/// character). Eight bytes at a time: in Wasm each turn of a loop also checks the CPU budget.
fn needs_escape(text: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    // Whether a byte of `v` is below `n` (n <= 0x80): exact as a yes or no.
    let any_below = |v: u64, n: u8| v.wrapping_sub(ONES * u64::from(n)) & !v & HIGH != 0;
    let mut chunks = text.chunks_exact(8);
    for chunk in &mut chunks {
        let v = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        if any_below(v, 0x20)
            || any_below(v ^ (ONES * u64::from(b'"')), 1)
            || any_below(v ^ (ONES * u64::from(b'\\')), 1)
        {
            return true;
        }
    }
    (chunks.remainder().iter()).any(|&b| b == b'"' || b == b'\\' || b < 0x20)
}

/// At most the first 80 characters of `text`, for error messages that quote a value.
pub fn excerpt(text: &str) -> &str {
    match text.char_indices().nth(80) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// Why [`for_each_field`] or [`for_each_element`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The text is not JSON: what is wrong, and where, in serde_json's words.
    NotJson(String),
    /// The text is JSON of another type than expected.
    WrongType {
        /// What was expected: `a JSON object` or `a JSON array`.
        expected: &'static str,
        /// The start of the text that was found.
        found: String,
    },
    /// The function called for a field or element failed with this error.
    Failed(Error),
}

impl ReadError {
    /// The error to report about the text, called `subject` (such as `value`): a failure of the
    /// function called for a field is returned as it was.
    pub fn describe(self, subject: &str) -> Error {
        match self {
            ReadError::NotJson(why) => Error::new(format!("{subject} is not valid JSON: {why}")),
            ReadError::WrongType { expected, found } => {
                Error::new(format!("{subject} is not {expected}: {found}"))
            }
            ReadError::Failed(error) => error,
        }
    }
}

/// About the record's value: `value is not valid JSON: ...`.
impl From<ReadError> for Error {
    fn from(error: ReadError) -> Self {
        error.describe("value")
    }
}

impl From<std::str::Utf8Error> for ReadError {
    fn from(error: std::str::Utf8Error) -> Self {
        ReadError::NotJson(error.to_string())
    }
}

/// Calls `each` with the key and the value of every field of the JSON object `text`, in order,
/// in one pass. The whole of `text` must be one object (whitespace around it aside): otherwise,
/// or when `each` fails, the pass stops with the reason. Fields repeated in the input are
/// passed as often as they appear.
///
/// The key is an [`ObjectKey`] (its text, escapes decoded) or a `&RawValue` (exactly as
/// written, quotes included); the value's raw text is [`RawValue::get`].
pub fn for_each_field<'a, K, F>(text: &'a str, each: F) -> Result<(), ReadError>
where
    K: Deserialize<'a>,
    F: FnMut(K, &'a RawValue) -> Result<(), Error>,
{
    read(
        text,
        b'{',
        "a JSON object",
        |deserializer, visitor| deserializer.deserialize_map(visitor),
        each,
    )
}

/// Calls `each` with every element of the JSON array `text`, in order, in one pass; as
/// [`for_each_field`] does for objects.
pub fn for_each_element<'a, F>(text: &'a str, mut each: F) -> Result<(), ReadError>
where
    F: FnMut(&'a RawValue) -> Result<(), Error>,
{
    read(
        text,
        b'[',
        "a JSON array",
        |deserializer, visitor| deserializer.deserialize_seq(visitor),
        |(), value| each(value),
    )
}

/// Rewrites the JSON object `value` into `out` in one pass: `each` is called with every field
/// and writes what becomes of it to the [`ObjectWriter`] (nothing, to drop it). Errors about
/// the input say `value is not valid JSON: ...` or `value is not a JSON object: ...`; an error
/// of `each` is returned as it was.
pub fn rewrite_object<'a, F>(value: &'a [u8], out: &mut Vec<u8>, mut each: F) -> Result<(), Error>
where
    F: FnMut(&mut ObjectWriter<'_>, ObjectKey<'a>, &'a RawValue) -> Result<(), Error>,
{
    let text = std::str::from_utf8(value).map_err(ReadError::from)?;
    let mut object = ObjectWriter::new(out);
    for_each_field(text, |key, value| each(&mut object, key, value))?;
    object.end();
    Ok(())
}

/// The pass shared by objects and arrays: checks that `text` opens with `open`, then runs
/// serde_json over it with a visitor that calls `each` per member.
fn read<'a, K, F>(
    text: &'a str,
    open: u8,
    expected: &'static str,
    drive: impl FnOnce(
        &mut serde_json::Deserializer<serde_json::de::StrRead<'a>>,
        Members<'_, K, F>,
    ) -> Result<(), serde_json::Error>,
    each: F,
) -> Result<(), ReadError>
where
    K: Deserialize<'a>,
    F: FnMut(K, &'a RawValue) -> Result<(), Error>,
{
    let start = text
        .bytes()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if start != Some(open) {
        // serde_json says what is wrong, and where, in the words users know.
        return Err(match serde_json::from_str::<&RawValue>(text) {
            Ok(other) => ReadError::WrongType {
                expected,
                found: excerpt(other.get()).to_string(),
            },
            Err(e) => ReadError::NotJson(e.to_string()),
        });
    }
    let mut failure = None;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let members = Members {
        each,
        failure: &mut failure,
        key: PhantomData,
    };
    let result = drive(&mut deserializer, members).and_then(|()| deserializer.end());
    match (failure, result) {
        // The caller's own error, which stopped the pass.
        (Some(error), _) => Err(ReadError::Failed(error)),
        (None, Ok(())) => Ok(()),
        (None, Err(e)) => Err(ReadError::NotJson(e.to_string())),
    }
}

/// Visits an object's fields or an array's elements (with the key `()`), calling `each`.
struct Members<'f, K, F> {
    each: F,
    /// Where an error of `each` goes; serde's error then only stops the pass.
    failure: &'f mut Option<Error>,
    key: PhantomData<fn() -> K>,
}

impl<'a, K, F> Members<'_, K, F>
where
    F: FnMut(K, &'a RawValue) -> Result<(), Error>,
{
    fn call<E: serde::de::Error>(&mut self, key: K, value: &'a RawValue) -> Result<(), E> {
        (self.each)(key, value).map_err(|error| {
            *self.failure = Some(error);
            E::custom("stopped by the caller")
        })
    }
}

impl<'a, K, F> Visitor<'a> for Members<'_, K, F>
where
    K: Deserialize<'a>,
    F: FnMut(K, &'a RawValue) -> Result<(), Error>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object or array")
    }

    fn visit_map<M: MapAccess<'a>>(mut self, mut map: M) -> Result<(), M::Error> {
        while let Some(key) = map.next_key::<K>()? {
            let value: &'a RawValue = map.next_value()?;
            self.call(key, value)?;
        }
        Ok(())
    }

    fn visit_seq<S: SeqAccess<'a>>(mut self, mut seq: S) -> Result<(), S::Error> {
        // Arrays have no keys: `K` is `()` for them, which any deserializer gives.
        while let Some(value) = seq.next_element::<&'a RawValue>()? {
            let key = K::deserialize(serde::de::value::UnitDeserializer::new())?;
            self.call(key, value)?;
        }
        Ok(())
    }
}

/// Where a writer was, to go back to with `rollback`: for a member that turns out, once
/// written, not to be wanted after all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    len: usize,
    empty: bool,
}

/// The members of a JSON object or array being written: the commas between them.
struct Separated<'o> {
    out: &'o mut Vec<u8>,
    empty: bool,
}

impl<'o> Separated<'o> {
    fn open(out: &'o mut Vec<u8>, bracket: u8) -> Self {
        out.push(bracket);
        Separated { out, empty: true }
    }

    #[inline]
    fn next(&mut self) -> &mut Vec<u8> {
        if !std::mem::take(&mut self.empty) {
            self.out.push(b',');
        }
        self.out
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            len: self.out.len(),
            empty: self.empty,
        }
    }

    fn rollback(&mut self, checkpoint: Checkpoint) {
        self.out.truncate(checkpoint.len);
        self.empty = checkpoint.empty;
    }
}

/// Writes a JSON object field by field: `{` when made, `}` at [`ObjectWriter::end`], and the
/// commas between fields. Each `field...` method writes the key and returns the buffer to append
/// the field's value to, as JSON.
pub struct ObjectWriter<'o>(Separated<'o>);

impl<'o> ObjectWriter<'o> {
    /// Starts an object at the end of `out`.
    pub fn new(out: &'o mut Vec<u8>) -> Self {
        ObjectWriter(Separated::open(out, b'{'))
    }

    /// Starts a field called `name`, escaped as JSON requires; append its value.
    #[inline]
    pub fn field(&mut self, name: &str) -> &mut Vec<u8> {
        let out = self.0.next();
        write_key(out, name);
        out
    }

    /// Starts a field with a key as read: as it was written unless it had escapes, which are
    /// written again as JSON requires. Append its value.
    #[inline]
    pub fn field_as_read(&mut self, key: &ObjectKey<'_>) -> &mut Vec<u8> {
        let out = self.0.next();
        key.write(out);
        out
    }

    /// Starts a field whose key is given as written in JSON, quotes included (such as a key
    /// read as `&RawValue`, or one escaped once beforehand with [`write_string`]). Append its
    /// value.
    #[inline]
    pub fn field_as_written(&mut self, key: &str) -> &mut Vec<u8> {
        let out = self.0.next();
        out.extend_from_slice(key.as_bytes());
        out.push(b':');
        out
    }

    /// Starts a field whose key the caller writes too: append `"key":` then the value.
    #[inline]
    pub fn field_unwritten(&mut self) -> &mut Vec<u8> {
        self.0.next()
    }

    /// Copies a field read from the input: its key as read, its value exactly as written.
    #[inline]
    pub fn keep(&mut self, key: &ObjectKey<'_>, value: &RawValue) {
        self.field_as_read(key)
            .extend_from_slice(value.get().as_bytes());
    }

    /// Where the object is now, to undo the fields written after it with
    /// [`ObjectWriter::rollback`].
    pub fn checkpoint(&self) -> Checkpoint {
        self.0.checkpoint()
    }

    /// Removes the fields written since `checkpoint`.
    pub fn rollback(&mut self, checkpoint: Checkpoint) {
        self.0.rollback(checkpoint)
    }

    /// Closes the object.
    pub fn end(self) {
        self.0.out.push(b'}');
    }
}

/// Writes a JSON array element by element: `[` when made, `]` at [`ArrayWriter::end`], and the
/// commas between elements.
pub struct ArrayWriter<'o>(Separated<'o>);

impl<'o> ArrayWriter<'o> {
    /// Starts an array at the end of `out`.
    pub fn new(out: &'o mut Vec<u8>) -> Self {
        ArrayWriter(Separated::open(out, b'['))
    }

    /// Starts an element: append its value, as JSON.
    #[inline]
    pub fn element(&mut self) -> &mut Vec<u8> {
        self.0.next()
    }

    /// Where the array is now, to undo the elements written after it with
    /// [`ArrayWriter::rollback`].
    pub fn checkpoint(&self) -> Checkpoint {
        self.0.checkpoint()
    }

    /// Removes the elements written since `checkpoint`.
    pub fn rollback(&mut self, checkpoint: Checkpoint) {
        self.0.rollback(checkpoint)
    }

    /// Closes the array.
    pub fn end(self) {
        self.0.out.push(b']');
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

    #[test]
    fn needs_escape_finds_every_byte_json_escapes_wherever_it_is() {
        for fill in [b'a', b' ', b'#', b']', 0x80, 0xff] {
            for len in 1..20 {
                for at in 0..len {
                    for byte in 0..=255u8 {
                        let mut text = vec![fill; len];
                        text[at] = byte;
                        let expected = byte == b'"' || byte == b'\\' || byte < 0x20;
                        assert_eq!(needs_escape(&text), expected, "{text:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        assert!(matches!(
            string_text(r#""plain""#),
            Ok(Cow::Borrowed("plain"))
        ));
        assert_eq!(string_text(r#""a\"b\u00e9""#).unwrap(), "a\"bé");
        assert!(matches!(string_text(r#""a\"b""#), Ok(Cow::Owned(_))));
        assert!(string_text("12").is_err());
        assert!(string_text(r#""\ud800""#).is_err());
        // What the shortcut must leave to serde_json: not one string, a raw control character,
        // whitespace around the quotes.
        for not_a_string in [r#""a"b""#, r#""a" "b""#, "\"tab\there\"", "\"", ""] {
            assert!(string_text(not_a_string).is_err(), "{not_a_string:?}");
        }
        assert_eq!(string_text(" \"é\" ").unwrap(), "é");
        assert!(matches!(string_text("\"\""), Ok(Cow::Borrowed(""))));
        let mut out = Vec::new();
        write_string(&mut out, "q\"\n");
        assert_eq!(out, br#""q\"\n""#);
    }

    /// Fields as `(key as written, value)`, or the error as its message about `value`.
    fn fields(text: &str) -> Result<Vec<(String, String)>, String> {
        let mut seen = Vec::new();
        for_each_field(text, |key: &RawValue, value: &RawValue| {
            seen.push((key.get().to_string(), value.get().to_string()));
            Ok(())
        })
        .map(|()| seen)
        .map_err(|e| Error::from(e).to_string())
    }

    #[test]
    fn fields_come_in_order_as_written() {
        assert_eq!(
            fields(r#" { "a" : 1.50 , "b\u0041":{"x": [1, 2]}, "a":null } "#).unwrap(),
            [
                ("\"a\"", "1.50"),
                (r#""b\u0041""#, r#"{"x": [1, 2]}"#),
                ("\"a\"", "null")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(fields("{}").unwrap(), []);
        assert_eq!(
            fields("[1,2]").unwrap_err(),
            "value is not a JSON object: [1,2]"
        );
        assert_eq!(
            fields("not json").unwrap_err(),
            "value is not valid JSON: expected ident at line 1 column 2"
        );
        assert_eq!(
            fields(r#"{"a":1} x"#).unwrap_err(),
            "value is not valid JSON: trailing characters at line 1 column 9"
        );
        assert_eq!(
            fields(r#"{"a":}"#).unwrap_err(),
            "value is not valid JSON: expected value at line 1 column 6"
        );
        let missing_comma =
            ReadError::NotJson("expected `,` or `}` at line 1 column 8".to_string());
        assert_eq!(
            for_each_field(r#"{"a":1 "b":2}"#, |_: ObjectKey<'_>, _| Ok(())),
            Err(missing_comma)
        );
    }

    #[test]
    fn a_failing_call_stops_the_pass_with_its_error() {
        let mut calls = 0;
        let result = for_each_field(r#"{"a":1,"b":2,"c":3}"#, |key: ObjectKey<'_>, _| {
            calls += 1;
            if key.as_str() == "b" {
                Err(Error::new("no b"))
            } else {
                Ok(())
            }
        });
        assert_eq!(result, Err(ReadError::Failed(Error::new("no b"))));
        assert_eq!(calls, 2);
        assert_eq!(
            ReadError::NotJson("EOF".to_string())
                .describe("table `t`: the value of key `k`")
                .to_string(),
            "table `t`: the value of key `k` is not valid JSON: EOF"
        );
    }

    #[test]
    fn elements_come_in_order_as_written() {
        let mut seen = Vec::new();
        for_each_element(r#"[ 1.0, {"a": 1}, "s" ]"#, |value| {
            seen.push(value.get());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, ["1.0", r#"{"a": 1}"#, r#""s""#]);
        let error = for_each_element("{}", |_| Ok(())).unwrap_err();
        assert_eq!(
            error.describe("list").to_string(),
            "list is not a JSON array: {}"
        );
    }

    #[test]
    fn writers_place_commas_and_undo_members() {
        let mut out = Vec::new();
        let mut object = ObjectWriter::new(&mut out);
        object.field("a\"").extend_from_slice(b"1");
        let before_b = object.checkpoint();
        object
            .field_as_written(r#""b\u0041""#)
            .extend_from_slice(b"2");
        object.rollback(before_b);
        let key: ObjectKey<'_> = serde_json::from_str(r#""c\u00e9""#).unwrap();
        let value: &RawValue = serde_json::from_str("[ 3 ]").unwrap();
        object.keep(&key, value);
        object.field_unwritten().extend_from_slice(br#""d":null"#);
        let mut array = ArrayWriter::new(object.field("e"));
        let start = array.checkpoint();
        array.element().extend_from_slice(b"1");
        array.rollback(start);
        array.element().extend_from_slice(b"2");
        array.element().extend_from_slice(b"3");
        array.end();
        object.end();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a\"":1,"cé":[ 3 ],"d":null,"e":[2,3]}"#
        );
    }

    #[test]
    fn rewrite_object_replaces_and_drops_fields() {
        let mut out = Vec::new();
        rewrite_object(
            br#"{"a": 1, "b": 2, "c": "x"}"#,
            &mut out,
            |object, key, value| {
                match key.as_str() {
                    "a" => object.field("A").extend_from_slice(b"10"),
                    "b" => {}
                    _ => object.keep(&key, value),
                }
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(out, br#"{"A":10,"c":"x"}"#);
        let invalid = rewrite_object(b"\xff", &mut Vec::new(), |_, _, _| Ok(())).unwrap_err();
        assert_eq!(
            invalid.to_string(),
            "value is not valid JSON: invalid utf-8 sequence of 1 bytes from index 0"
        );
    }
}
