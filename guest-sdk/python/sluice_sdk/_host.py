"""What the SDK asks of the host. Natively these are fakes (log lines to standard error, the
tables `testing.set_table` fills); the component glue replaces `current` with the real
imports."""

import sys
from typing import Protocol

from .errors import Error

LEVELS = ("Trace", "Debug", "Info", "Warn", "Error")
"""The log levels, in the order of the contract's `level` enum."""


class Host(Protocol):
    """The host's imports."""

    def log(self, level: int, message: str) -> None:
        """Writes a line at `level`, an index into `LEVELS`."""

    def lookup(self, table: str, key: bytes) -> bytes | None:
        """The value of `key` in `table`; raises `Error` with the host's message when the
        pipeline declares no such table."""


class NativeHost:
    """The host outside a component: for unit tests and local runs."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[bytes, bytes]] = {}

    def log(self, level: int, message: str) -> None:
        print(f"[{LEVELS[level]}] {message}", file=sys.stderr)

    def lookup(self, table: str, key: bytes) -> bytes | None:
        entries = self.tables.get(table)
        if entries is None:
            raise Error(f"this pipeline declares no table named `{table}`")
        return entries.get(bytes(key))


native = NativeHost()
current: Host = native
