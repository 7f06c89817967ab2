"""Where a transform writes its outputs."""

from collections.abc import Iterable
import enum
import json
from types import ModuleType
from typing import Any, Final

from . import _types
from ._types import Span
from .errors import Error
from .record import Record


class Inherit(enum.Enum):
    """The type of `INHERIT`."""

    INHERIT = enum.auto()


INHERIT: Final = Inherit.INHERIT
"""For `Writer.write_record`'s key or timestamp: the input's (the default)."""

Bytes = bytes | bytearray | memoryview | str
"""What the writer accepts as bytes: str is written as UTF-8."""


def _as_bytes(value: Bytes) -> bytes | bytearray | memoryview:
    return value.encode() if isinstance(value, str) else value


class Writer:
    """Where a transform writes the outputs of the record it is handling.

    Outputs inherit the input's key, headers and timestamp unless `write_record` says
    otherwise, so that keyed data stays in its partition downstream. They are packed straight
    into the batch returned to the host.
    """

    __slots__ = ("_types", "_data", "_headers", "_records", "_input", "_index")

    def __init__(self, types: ModuleType = _types) -> None:
        # The classes of the batch shapes: the generated ones inside a component.
        self._types = types
        self._data = bytearray()
        self._headers: list[Any] = []
        self._records: list[Any] = []
        self._input = Record()
        self._index = 0

    def write(self, value: Bytes) -> None:
        """Writes `value` to the default output, with the input's key, headers and timestamp."""
        self._finish(None, self._push(value), INHERIT, INHERIT, True, ())

    def write_to(self, topic: str, value: Bytes) -> None:
        """Writes `value` to `topic`, which must be one of the pipeline's outputs."""
        self._finish(self._push(topic), self._push(value), INHERIT, INHERIT, True, ())

    def write_json(self, value: Any) -> None:
        """Serialises `value` as compact JSON (as serde_json does) and writes it like `write`."""
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise Error(f"cannot serialise output as JSON: {e}") from None
        self.write(text)

    def write_record(
        self,
        value: Bytes | None,
        *,
        topic: str | None = None,
        key: Bytes | None | Inherit = INHERIT,
        timestamp: int | None | Inherit = INHERIT,
        keep_input_headers: bool = True,
        headers: Iterable[tuple[str, Bytes | None]] = (),
    ) -> None:
        """Writes an output with explicit settings.

        `value` None writes a tombstone; `topic` None the default output; `key` None a null key
        and `timestamp` None lets the producer stamp it (both inherit the input's unless given).
        `headers` are added after the input's, which `keep_input_headers=False` drops.
        """
        self._finish(
            None if topic is None else self._push(topic),
            None if value is None else self._push(value),
            key if key is None or key is INHERIT else self._push(key),
            timestamp,
            keep_input_headers,
            headers,
        )

    def _begin(self, index: int, record: Record) -> None:
        """Makes `record`, input `index` of the batch, the one following outputs derive from."""
        self._index = index
        self._input = record

    def _mark(self) -> tuple[int, int, int]:
        """How far the writer got, to undo a failed record's outputs with `_rollback`."""
        return len(self._data), len(self._headers), len(self._records)

    def _rollback(self, mark: tuple[int, int, int]) -> None:
        data, headers, records = mark
        del self._data[data:]
        del self._headers[headers:]
        del self._records[records:]

    def _batch(self, errors: list[Any]) -> Any:
        """The output batch, with these per-record errors."""
        return self._types.OutputBatch(bytes(self._data), self._headers, self._records, errors)

    def _push(self, value: Bytes) -> Span:
        start = len(self._data)
        self._data += _as_bytes(value)
        return self._types.Span(start, len(self._data) - start)

    def _push_header(self, name: str, value: Bytes | None) -> None:
        span = None if value is None else self._push(value)
        self._headers.append(self._types.Header(self._push(name), span))

    def _finish(
        self,
        topic: Span | None,
        value: Span | None,
        key: Span | None | Inherit,
        timestamp: int | None | Inherit,
        keep_input_headers: bool,
        extra_headers: Iterable[tuple[str, Bytes | None]],
    ) -> None:
        """Completes an output; `INHERIT` for key or timestamp means the input's."""
        source = self._input
        if key is INHERIT:
            key = None if source.key is None else self._push(source.key)
        first_header = len(self._headers)
        if keep_input_headers:
            for name, header_value in source.headers:
                self._push_header(name, header_value)
        for name, header_value in extra_headers:
            self._push_header(name, header_value)
        self._records.append(
            self._types.OutputRecord(
                self._index,
                topic,
                key,
                value,
                first_header,
                len(self._headers) - first_header,
                source.timestamp if timestamp is INHERIT else timestamp,
            )
        )
