"""A deployment's configuration."""

from collections.abc import Iterable
import re

from .errors import Error

_INTEGER = re.compile(r"[+-]?[0-9]+")


class Config:
    """A deployment's configuration: the key/value pairs of its `config` table.

    Error messages name the key and the value, as the Rust SDK's do, so that a refused
    deployment says what to fix.
    """

    __slots__ = ("_entries", "_values")

    def __init__(self, entries: Iterable[tuple[str, str]] = ()) -> None:
        self._entries = [(str(k), str(v)) for k, v in entries]
        # A repeated key's last value wins, as a dict built in order keeps it.
        self._values = dict(self._entries)

    def get(self, key: str) -> str | None:
        """The value of `key`, or None when unset."""
        return self._values.get(key)

    def require(self, key: str) -> str:
        """The value of `key`; an error naming the key when it is unset."""
        value = self._values.get(key)
        if value is None:
            raise Error(f"config key `{key}` is required")
        return value

    def get_bool(self, key: str) -> bool | None:
        """The value of `key` as `true` or `false`, None when unset."""
        value = self._values.get(key)
        if value is None:
            return None
        if value not in ("true", "false"):
            raise self._invalid(key, value, "provided string was not `true` or `false`")
        return value == "true"

    def get_int(self, key: str) -> int | None:
        """The value of `key` as a decimal integer, None when unset."""
        value = self._values.get(key)
        if value is None:
            return None
        if not _INTEGER.fullmatch(value):
            why = (
                "invalid digit found in string"
                if value
                else "cannot parse integer from empty string"
            )
            raise self._invalid(key, value, why)
        return int(value)

    def choice(self, key: str, choices: Iterable[str]) -> str | None:
        """The value of `key`, which must be one of `choices`; None when unset."""
        options = list(choices)
        value = self._values.get(key)
        if value is not None and value not in options:
            expected = ", ".join(options)
            raise Error(f"config key `{key}`: invalid value `{value}`, expected one of: {expected}")
        return value

    def allow_only(self, known: Iterable[str]) -> None:
        """Refuses keys other than `known`, so that a typo is an error rather than a silently
        ignored setting."""
        names = list(known)
        for key, _ in self._entries:
            if key not in names:
                raise Error(f"unknown config key `{key}`; known keys: {', '.join(names)}")

    def entries(self) -> list[tuple[str, str]]:
        """Every pair, in the order given (repeated keys included)."""
        return list(self._entries)

    @staticmethod
    def _invalid(key: str, value: str, why: str) -> Error:
        return Error(f"config key `{key}`: invalid value `{value}`: {why}")
