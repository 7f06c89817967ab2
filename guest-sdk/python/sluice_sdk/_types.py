"""The contract's batch shapes (`sluice:transform/types` in `wit/transform.wit`), field for
field as componentize-py generates them. Natively, `testing` builds and reads these; inside the
component the generated classes take their place, so the batch code runs unchanged on both."""

from dataclasses import dataclass


@dataclass(slots=True)
class Span:
    """A range of bytes of a batch's `data`."""

    start: int
    len: int


@dataclass(slots=True)
class Header:
    """One header: its name's span and its value's (None for a null value)."""

    name: Span
    value: Span | None


@dataclass(slots=True)
class InputRecord:
    """A record of an input batch."""

    offset: int
    timestamp: int | None
    key: Span | None
    value: Span | None
    first_header: int
    header_count: int


@dataclass(slots=True)
class InputBatch:
    """Consecutive records from one partition of one topic."""

    topic: str
    partition: int
    data: bytes
    headers: list[Header]
    records: list[InputRecord]


@dataclass(slots=True)
class OutputRecord:
    """An output: the index of its input, then spans of the output batch's `data`."""

    input: int
    topic: Span | None
    key: Span | None
    value: Span | None
    first_header: int
    header_count: int
    timestamp: int | None


@dataclass(slots=True)
class RecordError:
    """An input that failed, and why."""

    input: int
    message: str


@dataclass(slots=True)
class OutputBatch:
    """What `process` returns for a batch."""

    data: bytes
    headers: list[Header]
    records: list[OutputRecord]
    errors: list[RecordError]
