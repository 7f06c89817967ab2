"""Write Sluice stream transforms in Python.

A transform subclasses `Transform`: it is built once per instance from the deployment's
`Config`, then `process` is called once per record with the `Record` and a `Writer` for its
outputs. `python -m sluice_sdk build MODULE:CLASS -o OUT.wasm` turns it into a WebAssembly
component for the Sluice runtime (with componentize-py); the same code runs natively, so
transform logic is unit-tested with pytest through `sluice_sdk.testing`.

Beside that: `sluice_sdk.json` rewrites JSON records field by field, keeping the bytes of what
does not change; `sluice_sdk.tables` looks keys up in the pipeline's lookup tables;
`sluice_sdk.log` writes to the runtime's log.
"""

from . import json, log, tables, testing
from .config import Config
from .errors import Error
from .record import Header, Record
from .transform import Transform
from .writer import INHERIT, Writer

__all__ = [
    "Config",
    "Error",
    "Header",
    "INHERIT",
    "Record",
    "Transform",
    "Writer",
    "json",
    "log",
    "tables",
    "testing",
]
