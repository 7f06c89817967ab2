"""`python -m sluice_sdk build MODULE:CLASS -o OUT.wasm`: builds a transform into a component.

Run it from the transform's directory. It checks that `MODULE` defines `CLASS`, a `Transform`,
writes a two-line app module that exports it (`Transform = export(CLASS)`), and runs
componentize-py over the app, the project and the SDK against the contract shipped in the
package (`sluice_sdk/wit/transform.wit`), world `transformer`.
"""

import argparse
import importlib
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile

from .transform import Transform

WIT = Path(__file__).parent / "wit"
WORLD = "transformer"
APP = "sluice_app"


class BuildError(Exception):
    """Why the component could not be built, for the person who ran the build."""


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m sluice_sdk")
    commands = parser.add_subparsers(dest="command", required=True)
    build_command = commands.add_parser("build", help="build a transform into a component")
    build_command.add_argument(
        "target", metavar="MODULE:CLASS", help="the transform, such as email_mask:EmailMask"
    )
    build_command.add_argument(
        "-o", "--output", required=True, type=Path, help="the component to write"
    )
    build_command.add_argument(
        "--path",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="another directory to find modules in (the current one always is); repeatable",
    )
    args = parser.parse_args(argv)
    try:
        size = build(args.target, args.output, [Path.cwd(), *args.path])
    except BuildError as e:
        print(f"sluice_sdk build: {e}", file=sys.stderr)
        return 1
    print(f"{args.output}: {size / 1e6:.1f} MB")
    return 0


def build(target: str, output: Path, paths: list[Path]) -> int:
    """Builds the transform `target` (`module:Class`, found in `paths`) into the component
    `output`; returns its size in bytes."""
    module, _, name = target.partition(":")
    if not module or not name:
        raise BuildError(f"expected MODULE:CLASS, such as email_mask:EmailMask, not `{target}`")
    paths = [p.resolve() for p in paths]
    check_transform(module, name, paths)
    componentize = find_componentize()
    sdk = Path(__file__).resolve().parent.parent
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as app_dir:
        Path(app_dir, f"{APP}.py").write_text(
            "from sluice_sdk.component import export\n"
            f"from {module} import {name}\n\n"
            f"Transform = export({name})\n"
        )
        command = [componentize, "-d", str(WIT), "-w", WORLD, "componentize", APP, "-p", app_dir]
        for path in [*paths, sdk]:
            command += ["-p", str(path)]
        command += ["-o", str(output)]
        if subprocess.run(command, stdout=subprocess.DEVNULL).returncode != 0:
            raise BuildError("componentize-py failed (its messages are above)")
    return output.stat().st_size


def check_transform(module: str, name: str, paths: list[Path]) -> None:
    """Imports `module` from `paths` and checks that `name` in it is a `Transform` subclass."""
    sys.path[:0] = [str(p) for p in paths]
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as e:
        searched = ", ".join(map(str, paths))
        raise BuildError(f"cannot import `{module}` from {searched}: {e}") from None
    cls = getattr(loaded, name, None)
    if cls is None:
        raise BuildError(f"module `{module}` ({loaded.__file__}) has no `{name}`")
    if not (isinstance(cls, type) and issubclass(cls, Transform)):
        raise BuildError(f"`{module}:{name}` is not a subclass of sluice_sdk.Transform")


def find_componentize() -> str:
    """componentize-py: beside the running interpreter (in its venv), or on PATH."""
    beside = shutil.which("componentize-py", path=str(Path(sys.executable).parent))
    found = beside or shutil.which("componentize-py")
    if found is None:
        raise BuildError(
            f"componentize-py is not installed beside {sys.executable} nor on PATH: "
            "`pip install componentize-py==0.25.1` (or `pip install sluice-sdk[build]`)"
        )
    return found
