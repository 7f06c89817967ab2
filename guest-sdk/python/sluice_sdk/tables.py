"""Look keys up in the pipeline's lookup tables: the latest value per key of a Kafka topic.

Natively (in unit tests) lookups read the tables filled with `testing.set_table`.
"""

from typing import Any

from . import _host
from .record import parse_json


def lookup(table: str, key: bytes) -> bytes | None:
    """The latest value of `key` in `table`, or None when the key is absent or was deleted.
    Raises `Error` when the pipeline declares no table called `table`."""
    return _host.current.lookup(table, key)


def lookup_json(table: str, key: bytes) -> Any:
    """Like `lookup`, with the value parsed as JSON (None when the key is absent)."""
    value = lookup(table, key)
    if value is None:
        return None
    subject = f"table `{table}`: the value of key `{key.decode(errors='replace')}`"
    return parse_json(value, subject)
