"""The base class of transforms, and the batch loop that runs one."""

from abc import ABC, abstractmethod
from types import ModuleType
from typing import Any

from .config import Config
from .errors import describe
from .record import Header, Record
from .writer import Writer


class Transform(ABC):
    """A stream transform: built once per instance, then called for every record.

    An instance lives as long as its partition worker, so state kept in attributes (counters,
    caches) persists across batches, but not across restarts or redeployments.
    """

    def __init__(self, config: Config) -> None:
        """Builds the transform from the deployment's configuration. Raise `Error` naming the
        key and saying what is wrong with it to refuse the deployment with that message; call
        `config.allow_only([...])` so that an unknown key is refused too."""

    @abstractmethod
    def process(self, record: Record, out: Writer) -> None:
        """Handles one record: write zero or more outputs to `out` (none filters it out), or
        raise. On an exception the outputs already written for this record are discarded and
        the record goes to the pipeline's dead-letter topic with the exception's message."""


def process_batch(transform: Transform, batch: Any, types: ModuleType) -> Any:
    """Runs `transform` over every record of `batch` (an `input-batch`) and returns the
    `output-batch`, built with the classes of `types`. Shared by the component's export and
    `testing`, so that native tests run exactly what the component runs."""
    data: bytes = batch.data
    # The host only passes header names that are UTF-8.
    headers = [
        Header(
            data[h.name.start : h.name.start + h.name.len].decode(errors="replace"),
            None if h.value is None else data[h.value.start : h.value.start + h.value.len],
        )
        for h in batch.headers
    ]
    out = Writer(types)
    errors = []
    topic, partition = batch.topic, batch.partition
    for index, r in enumerate(batch.records):
        key, value = r.key, r.value
        record = Record(
            topic,
            partition,
            r.offset,
            r.timestamp,
            None if key is None else data[key.start : key.start + key.len],
            None if value is None else data[value.start : value.start + value.len],
            headers[r.first_header : r.first_header + r.header_count],
        )
        out._begin(index, record)
        mark = out._mark()
        try:
            transform.process(record, out)
        except Exception as e:
            out._rollback(mark)
            errors.append(types.RecordError(index, describe(e)))
    return out._batch(errors)
