"""Every writer path, through the batch encoding the component uses."""

from typing import Any

import pytest

from sluice_sdk import Config, Error, Header, Record, Transform, Writer, testing


class Router(Transform):
    """Exercises every writer path: plain, routed, JSON, explicit record, filter and error."""

    def __init__(self, config: Config) -> None:
        config.allow_only([])

    def process(self, record: Record, out: Writer) -> None:
        match record.value_str():
            case "drop":
                pass
            case "fail":
                out.write("partial output, discarded on error")
                raise Error("failed on purpose")
            case "bug":
                out.write("partial output, discarded on error")
                int("x")
            case "route":
                out.write_to("other", "routed")
            case "json":
                out.write_json({"offset": record.offset, "text": "é\n", "list": [1, 2.5, None]})
            case "twice":
                out.write("one")
                out.write(b"two")
            case "custom":
                out.write_record(
                    None, key=b"k2", timestamp=None, keep_input_headers=False, headers=[("h", b"v")]
                )
            case "rekeyed":
                out.write_record("v", topic="t", key=None, headers=[("added", None)])
            case other:
                out.write(other)


HEADERS = [Header("trace", b"abc"), Header("null", None)]


def run(*values: bytes) -> list[Any]:
    router = testing.init(Router)
    records = [
        Record(
            topic="in",
            partition=2,
            offset=7 + i,
            timestamp=1_000,
            key=b"key",
            value=v,
            headers=HEADERS,
        )
        for i, v in enumerate(values)
    ]
    return testing.process_batch(router, records)


def test_plain_outputs_inherit_key_headers_and_timestamp() -> None:
    [[plain]] = run(b"plain")
    assert plain == testing.Output(
        topic=None,
        key=b"key",
        value=b"plain",
        headers=[("trace", b"abc"), ("null", None)],
        timestamp=1_000,
    )
    assert plain.value_str() == "plain"


def test_routed_json_and_several_outputs() -> None:
    [[routed], [as_json], twice] = run(b"route", b"json", b"twice")
    assert (routed.topic, routed.value) == ("other", b"routed")
    # Compact, and not ASCII-escaped, as serde_json writes it.
    assert as_json.value == '{"offset":8,"text":"é\\n","list":[1,2.5,null]}'.encode()
    assert as_json.json()["offset"] == 8
    assert [o.value for o in twice] == [b"one", b"two"]


def test_explicit_records_override_what_is_inherited() -> None:
    [[custom], [rekeyed]] = run(b"custom", b"rekeyed")
    assert custom == testing.Output(
        topic=None, key=b"k2", value=None, headers=[("h", b"v")], timestamp=None
    )
    assert rekeyed == testing.Output(
        topic="t",
        key=None,
        value=b"v",
        headers=[("trace", b"abc"), ("null", None), ("added", None)],
        timestamp=1_000,
    )


def test_a_filtered_record_has_no_outputs_and_an_error_discards_partial_ones() -> None:
    dropped, failed, bug, after = run(b"drop", b"fail", b"bug", b"after")
    assert dropped == []
    assert isinstance(failed, Error) and str(failed) == "failed on purpose"
    assert isinstance(bug, Error)
    assert str(bug) == "ValueError: invalid literal for int() with base 10: 'x'"
    assert [o.value for o in after] == [b"after"]


def test_process_raises_the_records_error() -> None:
    router = testing.init(Router)
    with pytest.raises(Error, match="^failed on purpose$"):
        testing.process(router, Record(value=b"fail"))
    with pytest.raises(Error, match="^record has no value$"):
        testing.process(router, Record())
    with pytest.raises(Error, match="^value is not UTF-8: "):
        testing.process(router, Record(value=b"\xff\xfe"))


def test_json_that_cannot_be_written_is_the_records_error() -> None:
    class Bad(Transform):
        def process(self, record: Record, out: Writer) -> None:
            out.write_json({"n": float("nan")})

    with pytest.raises(Error, match="^cannot serialise output as JSON: "):
        testing.process(testing.init(Bad), Record(value=b""))


def test_records_read_their_value_and_headers() -> None:
    record = Record(
        value=b'{"a": [1, 2]}', headers=[Header("h", None), Header("h", b"2"), Header("x", b"1")]
    )
    assert record.json() == {"a": [1, 2]}
    assert record.header("x") == b"1"
    assert record.header("h") is None  # the first `h`, whose value is null
    assert record.header("missing") is None
    with pytest.raises(Error, match="^value is not valid JSON: "):
        Record(value=b'{"a": NaN}').json()
