"""A record read from Kafka."""

from collections.abc import Sequence
from dataclasses import dataclass
import json
from typing import Any, NamedTuple

from .errors import Error


class Header(NamedTuple):
    """One record header. Kafka allows repeated names and null values."""

    name: str
    value: bytes | None


def reject_constant(name: str) -> Any:
    """A `parse_constant` for the json module: refuses `NaN` and `Infinity`, as JSON (and
    serde_json) does."""
    raise ValueError(f"`{name}` is not a JSON value")


_DECODER = json.JSONDecoder(parse_constant=reject_constant)


def parse_json(text: str | bytes, subject: str) -> Any:
    """`text` parsed as JSON; an error saying `{subject} is not valid JSON: ...` otherwise."""
    try:
        return _DECODER.decode(text.decode() if isinstance(text, bytes) else text)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Error(f"{subject} is not valid JSON: {e}") from None


@dataclass(slots=True)
class Record:
    """A record read from Kafka. Tests build their own: `Record(value=b'{"a":1}')`."""

    topic: str = ""
    """The topic it was read from."""
    partition: int = 0
    """The partition it was read from."""
    offset: int = 0
    """Its offset in that partition."""
    timestamp: int | None = None
    """Its timestamp, milliseconds since the Unix epoch, when it has one."""
    key: bytes | None = None
    """Its key; None for a null key."""
    value: bytes | None = None
    """Its value; None for a null value (a tombstone)."""
    headers: Sequence[Header] = ()
    """Its headers, in order."""

    def value_str(self) -> str:
        """The value as UTF-8 text, or an error saying why not."""
        if self.value is None:
            raise Error("record has no value")
        try:
            return self.value.decode()
        except UnicodeDecodeError as e:
            raise Error(f"value is not UTF-8: {e}") from None

    def json(self) -> Any:
        """The value parsed as JSON (dicts, lists, str, int, float, bool, None)."""
        if self.value is None:
            raise Error("record has no value")
        return parse_json(self.value, "value")

    def header(self, name: str) -> bytes | None:
        """The value of the first header called `name`, if any."""
        for header in self.headers:
            if header.name == name:
                return header.value
        return None
