"""The error a transform raises to refuse a record or a configuration."""


class Error(Exception):
    """Why a record (or a configuration) was refused.

    Its message reaches the dead-letter topic and the runtime's log as it is, so say what was
    wrong and with which value. Any other exception raised by a transform is reported too, as
    its type and message (`ValueError: ...`).
    """

    @property
    def message(self) -> str:
        """The message."""
        return str(self)


def describe(error: Exception) -> str:
    """The message reported for `error`: an `Error`'s own, or the type and message of another
    exception, so that a bug dead-letters records with a clear reason instead of crashing."""
    if isinstance(error, Error):
        return str(error)
    return f"{type(error).__name__}: {error}"
