"""Masks the e-mail addresses in the string values of JSON records: the e-mail part of the PII
stripper (`transforms/pii-stripper`), in Python.

`{"id":1001,"note":"mail a@b.com"}` becomes `{"id":1001,"note":"mail [EMAIL]"}`. Outputs are
byte for byte those of the PII stripper with only its e-mail detector on and `action = mask`:
the same pattern and checks, numbers and every other value copied as written, fields kept in
order, whitespace between members dropped.
"""

import re

from sluice_sdk import Config, Error, Record, Transform, Writer, json

EMAIL = re.compile(
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,63}"
)
"""An e-mail address, as the PII stripper's pattern (ASCII only)."""

MASK = "[EMAIL]"

MAX_DEPTH = 128
"""How deeply objects and arrays may nest, as in the PII stripper."""

FILE_EXTENSIONS = frozenset(
    ["png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "ico", "bmp", "tif", "tiff", "css", "js"]
)
"""File names such as `logo@2x.png` have the shape of an e-mail address."""


def is_word(char: str) -> bool:
    """Whether `char` is an ASCII letter, digit or `_`."""
    return char.isascii() and (char.isalnum() or char == "_")


def is_email(text: str, start: int, end: int) -> bool:
    """Whether the match `text[start:end]` is an e-mail address: a local part of at most 64
    characters, at most 254 in all, not glued to a following word character, and not a file
    name. (The match is ASCII, so characters count as the PII stripper's bytes do.)"""
    at = text.index("@", start, end)
    tld = text[text.rindex(".", start, end) + 1 : end]
    return (
        at - start <= 64
        and end - start <= 254
        and not (end < len(text) and is_word(text[end]))
        and tld.lower() not in FILE_EXTENSIONS
    )


def mask_emails(text: str) -> str | None:
    """`text` with its e-mail addresses replaced by `[EMAIL]`, or None when it holds none."""
    if "@" not in text:  # most strings: one cheap pass, no regex
        return None
    pieces: list[str] = []
    kept = 0  # where the text not yet copied starts
    match = EMAIL.search(text)
    while match:
        start, end = match.span()
        if is_email(text, start, end):
            pieces += (text[kept:start], MASK)
            kept = end
        match = EMAIL.search(text, end)
    if not pieces:
        return None
    pieces.append(text[kept:])
    return "".join(pieces)


def mask_value(raw: str, depth: int, out: list[str]) -> None:
    """Appends the JSON value `raw`, with its strings' e-mail addresses masked, to `out`."""
    first = raw[0]
    if first in "{[" and depth == MAX_DEPTH:
        raise Error(f"value is nested deeper than {MAX_DEPTH} levels")
    if first == "{":
        obj = json.ObjectWriter(out)
        for key, member in json.fields(raw):
            mask_value(member, depth + 1, obj.field(key))
        obj.end()
    elif first == "[":
        array = json.ArrayWriter(out)
        for element in json.elements(raw):
            mask_value(element, depth + 1, array.element())
        array.end()
    elif first == '"':
        masked = mask_emails(json.string_text(raw))
        if masked is None:
            out.append(raw)  # as written, escapes included
        else:
            json.write_string(out, masked)
    else:
        out.append(raw)  # numbers, booleans and null, as written: `1.50` stays `1.50`


class EmailMask(Transform):
    """The transform. It has no settings."""

    def __init__(self, config: Config) -> None:
        config.allow_only([])

    def process(self, record: Record, out: Writer) -> None:
        if record.value is None:
            # A tombstone holds nothing to mask, and still deletes its key downstream.
            out.write_record(None)
            return
        # Checks the whole value first; the walk then only meets well-formed JSON.
        root = json.raw_value(record.value_str())
        masked: list[str] = []
        mask_value(root, 0, masked)
        out.write("".join(masked))
