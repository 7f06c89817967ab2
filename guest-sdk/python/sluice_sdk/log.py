"""Log lines to the runtime's log (target `sluice::guest`), tagged with the transform's name.

The runtime's log filter decides which levels are kept (`RUST_LOG=sluice::guest=trace` keeps
them all). Natively (in unit tests) the lines go to standard error instead::

    from sluice_sdk import log
    log.warn(f"record at offset {record.offset}: field `date` is empty, using the default")
"""

from . import _host


def trace(message: str) -> None:
    """Logs at trace level: very detailed tracing."""
    _host.current.log(0, message)


def debug(message: str) -> None:
    """Logs at debug level: detail useful when debugging a transform."""
    _host.current.log(1, message)


def info(message: str) -> None:
    """Logs at info level: normal operation worth noting."""
    _host.current.log(2, message)


def warn(message: str) -> None:
    """Logs at warn level: something unexpected that the transform handled."""
    _host.current.log(3, message)


def error(message: str) -> None:
    """Logs at error level: something failed."""
    _host.current.log(4, message)
