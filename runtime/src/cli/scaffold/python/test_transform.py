"""Native unit tests: `pytest`. They run the transform through the same batch code as the
component, without building WebAssembly."""

import pytest

from sluice_sdk import Error, Record, testing

from {{MODULE}} import {{TYPE}}


def test_renames_in_place_and_adds_fields() -> None:
    t = testing.init({{TYPE}}, {"rename": "msg:message", "add": "source:web"})
    out = testing.process(t, Record(value=b'{"id":1,"msg":"hi","n":2}'))
    assert out[0].value_str() == '{"id":1,"message":"hi","n":2,"source":"web"}'

    with pytest.raises(Error, match="expected a JSON object"):
        testing.process(t, Record(value=b"[1]"))
    with pytest.raises(Error):
        testing.init({{TYPE}}, {"rename": "oops"})
