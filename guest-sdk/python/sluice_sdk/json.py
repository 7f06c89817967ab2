"""Rewrite JSON records field by field, copying what does not change byte for byte instead of
parsing and re-serialising it.

`fields` reads each field of an object as its key and its value's raw text (`elements` each
element of an array), in one pass; an `ObjectWriter` (or `ArrayWriter`) writes the output,
placing braces and commas, into a list of text pieces. A field kept as it was costs a copy of
its text: numbers such as `1.50` or `1e5` stay exactly as written, and so do nested objects and
escaped strings. Whitespace between members is not kept; whitespace inside a kept value is.
Output is byte for byte what the Rust SDK's `sluice_sdk::json` writes for the same edits::

    from sluice_sdk import json

    def shout(obj: json.ObjectWriter, key: str, raw: str) -> None:
        if key == "name":
            json.write_string(obj.field("name"), json.string_text(raw).upper())
        elif key != "secret":  # not written: the field is dropped
            obj.keep(key, raw)

    out.write(json.rewrite_object(record.value, shout))

Keys are written as JSON escapes them, which is exactly as they were read unless they held
escapes (`"caf\\u00e9"` is written `"café"`); strings are escaped as serde_json escapes them.
What serde_json refuses is refused: `NaN`, `Infinity`, escapes of lone surrogates.
"""

from collections.abc import Callable, Iterator
import json
from json.decoder import scanstring
import re
from typing import NamedTuple

from .errors import Error
from .record import reject_constant

# The C implementation when there is one; escapes `"`, `\` and control characters, as serde_json
# does (\b \f \n \r \t by name, the rest as \u00XX), and leaves everything else as it is.
_encode_string: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]

# Validates values and finds where they end. Numbers are only checked, never converted (so
# integers of any length pass, as in serde_json).
_SKIMMER = json.JSONDecoder(parse_constant=reject_constant, parse_int=len, parse_float=len)
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_COLON = re.compile(r"[ \t\n\r]*:[ \t\n\r]*")
# After a member: a comma and the whitespace after it, or the closing bracket (group 1).
_AFTER_FIELD = re.compile(r"[ \t\n\r]*(?:,[ \t\n\r]*|(\}))")
_AFTER_ELEMENT = re.compile(r"[ \t\n\r]*(?:,[ \t\n\r]*|(\]))")
_SURROGATE = re.compile("[\ud800-\udfff]")


def excerpt(text: str) -> str:
    """At most the first 80 characters of `text`, for error messages that quote a value."""
    return text[:80]


def write_string(out: list[str], text: str) -> None:
    """Appends `text` to `out` as a JSON string, quoted and escaped."""
    out.append(_encode_string(text))


def string_text(raw: str, subject: str = "value") -> str:
    """The text of the JSON string `raw` (as written, quotes included, such as `fields` gives).
    Raises `Error` when `raw` is not a string or has an escape that does not decode (a lone
    surrogate)."""
    if raw[:1] == '"':
        try:
            text, end = scanstring(raw, 1)
        except ValueError as e:
            raise _not_json(subject, e) from None
        if end == len(raw):
            return _checked(text, raw, subject)
    raise Error(f"{subject} is not a JSON string: {excerpt(raw)}")


def raw_value(text: str, subject: str = "value") -> str:
    """The JSON value `text` as written, without the whitespace around it, once checked to be
    one well-formed value; an error saying `{subject} is not valid JSON: ...` otherwise."""
    start = _skip_whitespace(text, 0)
    end = _value_end(text, start, subject)
    _check_end(text, end, subject)
    return text[start:end]


def fields(text: str, subject: str = "value") -> Iterator[tuple[str, str]]:
    """The fields of the JSON object `text`, in order, in one pass: each as its key (escapes
    decoded) and its value's raw text. Fields repeated in the input come as often as they
    appear. Raises `Error` (`value is not a JSON object: ...`, `value is not valid JSON: ...`)
    when `text` is not one object, once the fields before the fault have been read."""
    at = _open(text, "{", "a JSON object", subject)
    if text.startswith("}", at):
        _check_end(text, at + 1, subject)
        return
    while True:
        if not text.startswith('"', at):
            raise _not_json(subject, "key must be a string", text, at)
        try:
            key, end = scanstring(text, at + 1)
        except ValueError as e:
            raise _not_json(subject, e) from None
        key = _checked(key, text[at:end], subject)
        colon = _COLON.match(text, end)
        if colon is None:
            raise _not_json(subject, "expected `:`", text, _skip_whitespace(text, end))
        at = colon.end()
        end = _value_end(text, at, subject)
        yield key, text[at:end]
        at = _next_member(text, end, _AFTER_FIELD, subject)
        if at is None:
            return


def elements(text: str, subject: str = "value") -> Iterator[str]:
    """The elements of the JSON array `text`, in order, each as its raw text; as `fields` does
    for objects."""
    at = _open(text, "[", "a JSON array", subject)
    if text.startswith("]", at):
        _check_end(text, at + 1, subject)
        return
    while True:
        end = _value_end(text, at, subject)
        yield text[at:end]
        at = _next_member(text, end, _AFTER_ELEMENT, subject)
        if at is None:
            return


def rewrite_object(value: bytes, each: Callable[["ObjectWriter", str, str], None]) -> bytes:
    """Rewrites the JSON object `value` in one pass: `each` is called with an `ObjectWriter`
    and every field's key and raw value, and writes what becomes of it (nothing, to drop it).
    Returns the new value's bytes."""
    try:
        text = value.decode()
    except UnicodeDecodeError as e:
        raise _not_json("value", e) from None
    out: list[str] = []
    obj = ObjectWriter(out)
    for key, raw in fields(text):
        each(obj, key, raw)
    obj.end()
    return "".join(out).encode()


class Checkpoint(NamedTuple):
    """Where a writer was, to go back to with `rollback`."""

    pieces: int
    empty: bool


class _Members:
    """The members of a JSON object or array being written: the commas between them."""

    __slots__ = ("_out", "_empty")

    def __init__(self, out: list[str], bracket: str) -> None:
        out.append(bracket)
        self._out = out
        self._empty = True

    def _next(self) -> list[str]:
        if self._empty:
            self._empty = False
        else:
            self._out.append(",")
        return self._out

    def checkpoint(self) -> Checkpoint:
        """Where the writer is now, to undo the members written after it with `rollback`."""
        return Checkpoint(len(self._out), self._empty)

    def rollback(self, checkpoint: Checkpoint) -> None:
        """Removes the members written since `checkpoint`."""
        del self._out[checkpoint.pieces :]
        self._empty = checkpoint.empty


class ObjectWriter(_Members):
    """Writes a JSON object field by field into a list of text pieces: `{` when made, `}` at
    `end`, and the commas between fields. Each `field...` method writes the key and returns the
    list to append the field's value to, as JSON text."""

    __slots__ = ()

    def __init__(self, out: list[str]) -> None:
        super().__init__(out, "{")

    def field(self, name: str) -> list[str]:
        """Starts a field called `name`, escaped as JSON requires; append its value."""
        out = self._next()
        out.append(_encode_string(name))
        out.append(":")
        return out

    def field_as_written(self, key: str) -> list[str]:
        """Starts a field whose key is given as written in JSON, quotes included; append its
        value."""
        out = self._next()
        out.append(key)
        out.append(":")
        return out

    def keep(self, key: str, raw: str) -> None:
        """Copies a field read from the input: its key, and its value exactly as written."""
        self.field(key).append(raw)

    def end(self) -> None:
        """Closes the obj."""
        self._out.append("}")


class ArrayWriter(_Members):
    """Writes a JSON array element by element: `[` when made, `]` at `end`, and the commas
    between elements."""

    __slots__ = ()

    def __init__(self, out: list[str]) -> None:
        super().__init__(out, "[")

    def element(self) -> list[str]:
        """Starts an element: append its value, as JSON text."""
        return self._next()

    def end(self) -> None:
        """Closes the array."""
        self._out.append("]")


def _skip_whitespace(text: str, at: int) -> int:
    return _WHITESPACE.match(text, at).end()  # type: ignore[union-attr]  # it matches ""


def _value_end(text: str, at: int, subject: str) -> int:
    """Where the JSON value starting at `at` ends, once checked."""
    try:
        _, end = _SKIMMER.raw_decode(text, at)
    except ValueError as e:
        raise _not_json(subject, e) from None
    return end


def _open(text: str, bracket: str, expected: str, subject: str) -> int:
    """Checks that `text` opens with `bracket`; where its first member starts."""
    at = _skip_whitespace(text, 0)
    if not text.startswith(bracket, at):
        # Say what the text is, when it is JSON of another type.
        raise Error(f"{subject} is not {expected}: {excerpt(raw_value(text, subject))}")
    return _skip_whitespace(text, at + 1)


def _next_member(text: str, at: int, after: re.Pattern[str], subject: str) -> int | None:
    """After a member ending at `at`: where the next one starts, or None at the closing
    bracket (`after` matches what may come: `_AFTER_FIELD` or `_AFTER_ELEMENT`)."""
    found = after.match(text, at)
    if found is None:
        bracket = "}" if after is _AFTER_FIELD else "]"
        raise _not_json(subject, f"expected `,` or `{bracket}`", text, _skip_whitespace(text, at))
    if found.group(1) is None:
        return found.end()
    _check_end(text, found.end(), subject)
    return None


def _check_end(text: str, at: int, subject: str) -> None:
    """Checks that only whitespace follows `at`, where the value ends."""
    rest = _skip_whitespace(text, at)
    if rest != len(text):
        raise _not_json(subject, "trailing characters", text, rest)


def _checked(decoded: str, raw: str, subject: str) -> str:
    """`decoded`, the text of the JSON string `raw`, unless an escape in it was a lone
    surrogate (which Python decodes and serde_json refuses)."""
    if "\\u" in raw and _SURROGATE.search(decoded):
        raise _not_json(subject, f"lone surrogate in escape: {excerpt(raw)}")
    return decoded


def _not_json(subject: str, why: object, text: str = "", at: int | None = None) -> Error:
    """`{subject} is not valid JSON: {why}`, with the line and column of `at` if given."""
    if at is not None:
        line = text.count("\n", 0, at) + 1
        why = f"{why} at line {line} column {at - text.rfind(chr(10), 0, at)}"
    return Error(f"{subject} is not valid JSON: {why}")
