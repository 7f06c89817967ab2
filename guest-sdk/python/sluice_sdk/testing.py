"""Run a transform natively in unit tests, through the same batch encoding the runtime uses::

    from sluice_sdk import Record, testing

    shout = testing.init(Shout, {"field": "name"})
    [output] = testing.process(shout, Record(value=b'{"name":"ada"}'))
    assert output.json() == {"name": "ADA"}

Records are packed into an input batch as the host packs them, run through the loop the
component runs, and the output batch is unpacked into `Output`s.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
import json
from typing import Any, TypeVar

from . import _host, _types
from .config import Config
from .errors import Error
from .record import Record
from .transform import Transform, process_batch as _process_batch

T = TypeVar("T", bound=Transform)


@dataclass(frozen=True)
class Output:
    """An output as a test sees it, with spans resolved."""

    topic: str | None = None
    """The topic it is routed to; None for the pipeline's default output."""
    key: bytes | None = None
    value: bytes | None = None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp: int | None = None

    def value_str(self) -> str | None:
        """The value as UTF-8 text, if it is."""
        try:
            return None if self.value is None else self.value.decode()
        except UnicodeDecodeError:
            return None

    def json(self) -> Any:
        """The value parsed as JSON; raises if there is none or it is not JSON."""
        if self.value is None:
            raise ValueError("output has no value")
        return json.loads(self.value)


def init(cls: type[T], config: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> T:
    """Builds a transform from configuration, as the runtime's `init` would."""
    pairs = config.items() if isinstance(config, Mapping) else config
    return cls(Config(pairs))


def process(transform: Transform, record: Record) -> list[Output]:
    """Runs one record through the transform: its outputs. Raises the record's `Error`."""
    [result] = process_batch(transform, [record])
    if isinstance(result, Error):
        raise result
    return result


def process_batch(transform: Transform, records: Sequence[Record]) -> list[list[Output] | Error]:
    """Runs records through the transform as one batch (with the first record's topic and
    partition): per record, its outputs or its error."""
    output = _process_batch(transform, _encode(records), _types)
    data = output.data

    def at(span: _types.Span) -> bytes:
        return data[span.start : span.start + span.len]

    def optional(span: _types.Span | None) -> bytes | None:
        return None if span is None else at(span)

    outputs: list[list[Output]] = [[] for _ in records]
    for o in output.records:
        headers = output.headers[o.first_header : o.first_header + o.header_count]
        outputs[o.input].append(
            Output(
                topic=None if o.topic is None else at(o.topic).decode(),
                key=optional(o.key),
                value=optional(o.value),
                headers=[(at(h.name).decode(), optional(h.value)) for h in headers],
                timestamp=o.timestamp,
            )
        )
    failed = {e.input: Error(e.message) for e in output.errors}
    return [failed.get(i, found) for i, found in enumerate(outputs)]


def set_table(table: str, key: bytes, value: bytes | None) -> None:
    """Declares `table` (empty if it was not declared yet) and sets `key` to `value` in it;
    None deletes the key, as a tombstone does."""
    entries = _host.native.tables.setdefault(table, {})
    if value is None:
        entries.pop(key, None)
    else:
        entries[key] = value


def clear_tables() -> None:
    """Forgets every table."""
    _host.native.tables.clear()


def _encode(records: Sequence[Record]) -> _types.InputBatch:
    """Packs `records` into one input batch, as the host does."""
    data = bytearray()

    def push(value: bytes) -> _types.Span:
        data.extend(value)
        return _types.Span(len(data) - len(value), len(value))

    def optional(value: bytes | None) -> _types.Span | None:
        return None if value is None else push(value)

    headers: list[_types.Header] = []
    inputs = []
    for r in records:
        first = len(headers)
        for name, value in r.headers:
            headers.append(_types.Header(push(name.encode()), optional(value)))
        inputs.append(
            _types.InputRecord(
                r.offset,
                r.timestamp,
                optional(r.key),
                optional(r.value),
                first,
                len(headers) - first,
            )
        )
    first = records[0] if records else Record()
    return _types.InputBatch(first.topic, first.partition, bytes(data), headers, inputs)
