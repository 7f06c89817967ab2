"""The component's glue: the only module that imports the bindings componentize-py generates
(`wit_world`), so it is imported only inside a component. `python -m sluice_sdk build` writes
the app module that uses it::

    from sluice_sdk.component import export
    from email_mask import EmailMask

    Transform = export(EmailMask)
"""

from wit_world import exports
from wit_world.imports import log as host_log, tables as host_tables, types
from componentize_py_types import Err

from . import _host
from .config import Config
from .errors import Error, describe
from .transform import Transform, process_batch


class ComponentHost:
    """The host's imports, as the SDK calls them."""

    def log(self, level: int, message: str) -> None:
        host_log.log(host_log.Level(level), message)

    def lookup(self, table: str, key: bytes) -> bytes | None:
        try:
            return host_tables.lookup(table, bytes(key))
        except Err as e:
            raise Error(e.value) from None


def export(cls: type[Transform]) -> type[exports.Transform]:
    """The implementation of the contract's `transform` export that runs `cls`: name it
    `Transform` in the app module componentize-py builds."""
    _host.current = ComponentHost()

    class Export(exports.Transform):
        # The instance's transform, which `init` builds: a class attribute, as componentize-py
        # may make an `Export` per call. A component instance is single-threaded and runs one.
        transform: Transform

        def init(self, config: list[tuple[str, str]]) -> None:
            try:
                Export.transform = cls(Config(config))
            except Exception as e:
                raise Err(describe(e)) from None

        def process(self, batch: types.InputBatch) -> types.OutputBatch:
            return process_batch(Export.transform, batch, types)

    return Export
