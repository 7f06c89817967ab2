"""Native tests of the e-mail mask, through the batch encoding the component runs.

`tests/data/polyglot/email.jsonl` checks, in the Rust test suite, that the component's outputs
are byte for byte the PII stripper's.
"""

import pytest

from email_mask import EmailMask
from sluice_sdk import Error, Header, Record, testing


def mask(value: bytes) -> bytes | None:
    [output] = testing.process(testing.init(EmailMask), Record(value=value))
    return output.value


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        (b'{"id":1001,"note":"mail a@b.com"}', b'{"id":1001,"note":"mail [EMAIL]"}'),
        # Nested objects and arrays; numbers as written; whitespace between members dropped,
        # whitespace inside kept strings kept.
        (
            b'{ "a" : [ 1.50 , 1e5, -0, {"b": "x@y.org, c@d.co.uk"} ], "c": " as is " }',
            b'{"a":[1.50,1e5,-0,{"b":"[EMAIL], [EMAIL]"}],"c":" as is "}',
        ),
        # A changed string is escaped again as serde_json escapes it; a clean one keeps its bytes.
        (
            b'{"n":"\\u0061@b.com\\t\\u00e9","m":"\\u00e9"}',
            '{"n":"[EMAIL]\\té","m":"\\u00e9"}'.encode(),
        ),
        # Keys with escapes are written as JSON escapes them; keys are never masked.
        (b'{"k\\u0041":1,"a@b.com":2}', b'{"kA":1,"a@b.com":2}'),
        # File names, over-long local parts and addresses glued to a word are not e-mails.
        (
            b'["logo@2x.png","' + b"a" * 65 + b'@b.com","a@b.com_x","a@b.com."]',
            b'["logo@2x.png","' + b"a" * 65 + b'@b.com","a@b.com_x","[EMAIL]."]',
        ),
        (b' "whole x@y.com" ', b'"whole [EMAIL]"'),
        (b"  1.50 ", b"1.50"),
    ],
)
def test_masks_emails_and_keeps_every_other_byte(value: bytes, masked: bytes) -> None:
    assert mask(value) == masked


def test_outputs_keep_the_records_key_headers_and_timestamp() -> None:
    headers = [Header("trace", b"abc"), Header("null", None)]
    t = testing.init(EmailMask)
    record = Record(key=b"k", timestamp=1_700_000_000_000, headers=headers, value=b'{"e":"a@b.io"}')
    tombstone = Record(key=b"k", timestamp=1, headers=headers)
    [[output], [deleted]] = testing.process_batch(t, [record, tombstone])
    assert output == testing.Output(
        key=b"k",
        value=b'{"e":"[EMAIL]"}',
        headers=[("trace", b"abc"), ("null", None)],
        timestamp=1_700_000_000_000,
    )
    # A tombstone passes through: it still deletes its key downstream.
    assert (deleted.key, deleted.value, deleted.timestamp) == (b"k", None, 1)


@pytest.mark.parametrize(
    "value",
    [b"\xff", b'{"a":1,}', b'{"a":NaN}', b'{"a":"\\ud800"}', b"[" * 129 + b"]" * 129, b""],
)
def test_what_the_pii_stripper_refuses_is_refused(value: bytes) -> None:
    with pytest.raises(Error):
        mask(value)


def test_it_has_no_settings() -> None:
    with pytest.raises(Error, match="^unknown config key `email`; known keys: $"):
        testing.init(EmailMask, {"email": "true"})
