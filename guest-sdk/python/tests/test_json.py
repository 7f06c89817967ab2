"""Byte-preserving JSON rewriting: what is kept keeps its bytes, what is written is escaped as
serde_json escapes it, and what serde_json refuses is refused."""

import pytest

from sluice_sdk import Error, Record, Transform, Writer, json, testing


def fields(text: str) -> list[tuple[str, str]]:
    return list(json.fields(text))


def test_fields_come_in_order_as_written() -> None:
    assert fields(' { "a" : 1.50 , "b\\u0041":{"x": [1, 2]}, "a":null } ') == [
        ("a", "1.50"),
        ("bA", '{"x": [1, 2]}'),
        ("a", "null"),
    ]
    assert fields("{}") == fields(" { } ") == []
    assert list(json.elements('[ 1.0, {"a": 1}, "s" ]')) == ["1.0", '{"a": 1}', '"s"']
    assert list(json.elements("[]")) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1,2]", "value is not a JSON object: [1,2]"),
        ('"' + "x" * 100 + '"', 'value is not a JSON object: "' + "x" * 79),
        ('{"a":1} x', "value is not valid JSON: trailing characters at line 1 column 9"),
        ('{"a":1 "b":2}', "value is not valid JSON: expected `,` or `}` at line 1 column 8"),
        ('{"a" 1}', "value is not valid JSON: expected `:` at line 1 column 6"),
        ("{1:2}", "value is not valid JSON: key must be a string at line 1 column 2"),
        ('{"a":NaN}', "value is not valid JSON: `NaN` is not a JSON value"),
        ('{"a":-Infinity}', "value is not valid JSON: `-Infinity` is not a JSON value"),
        ('{"\\udc00":1}', 'value is not valid JSON: lone surrogate in escape: "\\udc00"'),
    ],
)
def test_what_is_not_one_object_is_refused(text: str, message: str) -> None:
    with pytest.raises(Error) as refused:
        fields(text)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    "text", ["", "not json", '{"a":}', '{"a":1,}', '{"a":01}', '{"a":"\x01"}', "[1 2]"]
)
def test_malformed_json_is_refused(text: str) -> None:
    with pytest.raises(Error, match="^value is not valid JSON: "):
        list(json.elements(text) if text.startswith("[") else json.fields(text))


def test_fields_before_a_fault_are_read() -> None:
    read = []
    with pytest.raises(Error):
        for key, _ in json.fields('{"a":1,"b":2 x'):
            read.append(key)
    assert read == ["a", "b"]


def test_numbers_of_any_length_pass_as_written() -> None:
    huge = "9" * 5000
    assert fields(f'{{"n":{huge},"f":1e400,"z":-0}}') == [("n", huge), ("f", "1e400"), ("z", "-0")]


def test_strings() -> None:
    assert json.string_text('"plain"') == "plain"
    assert json.string_text('"a\\"b\\u00e9\\ud83d\\ude00"') == 'a"bé😀'
    for not_a_string in ["12", '"a" ', '"\\ud800"', '"open']:
        with pytest.raises(Error):
            json.string_text(not_a_string)
    out: list[str] = []
    # serde_json's escapes: `"`, `\` and control characters; \u007f, \u2028 and non-ASCII as is.
    json.write_string(out, 'q"\\\n\t\b\f\r\x01\x1f\x7f\u2028é/')
    assert out == ['"q\\"\\\\\\n\\t\\b\\f\\r\\u0001\\u001f\x7f\u2028é/"']


def test_raw_value_strips_the_whitespace_around_one_value() -> None:
    assert json.raw_value("  1.50 \n") == "1.50"
    assert json.raw_value('{"a": [ 1 ]}') == '{"a": [ 1 ]}'
    with pytest.raises(Error, match="^key is not valid JSON: trailing characters"):
        json.raw_value("1 2", "key")


def test_writers_place_commas_and_undo_members() -> None:
    out: list[str] = []
    obj = json.ObjectWriter(out)
    obj.field('a"').append("1")
    before_b = obj.checkpoint()
    obj.field_as_written('"b\\u0041"').append("2")
    obj.rollback(before_b)
    obj.keep("cé", "[ 3 ]")
    array = json.ArrayWriter(obj.field("e"))
    start = array.checkpoint()
    array.element().append("1")
    array.rollback(start)
    array.element().append("2")
    array.element().append("3")
    array.end()
    obj.end()
    assert "".join(out) == '{"a\\"":1,"cé":[ 3 ],"e":[2,3]}'


class Shout(Transform):
    """Upper-cases `name`, drops `secret`, and keeps every other field's bytes as they were."""

    def process(self, record: Record, out: Writer) -> None:
        def each(obj: json.ObjectWriter, key: str, raw: str) -> None:
            if key == "name":
                json.write_string(obj.field("name"), json.string_text(raw).upper())
            elif key != "secret":
                obj.keep(key, raw)

        out.write(json.rewrite_object(record.value or b"", each))


def test_rewrite_object_keeps_the_bytes_of_what_it_does_not_change() -> None:
    shout = testing.init(Shout)
    value = b'{"price": 1.50, "name": "ada", "secret": 7, "tags": [ 1 ], "k\\u00e9": "\\u00e9"}'
    [output] = testing.process(shout, Record(value=value))
    assert output.value == '{"price":1.50,"name":"ADA","tags":[ 1 ],"ké":"\\u00e9"}'.encode()
    with pytest.raises(Error, match="^value is not a JSON object: \\[1\\]$"):
        testing.process(shout, Record(value=b"[1]"))
    with pytest.raises(Error, match="^value is not valid JSON: "):
        testing.process(shout, Record(value=b"\xff"))
