#!/usr/bin/env bash
# Installs the pinned tools that build and test Python and TypeScript transforms, idempotently
# and quietly:
#
#   <repo>/.cache/polyglot/venv        Python venv: componentize-py (Python to a component), pytest,
#                                      and guest-sdk/python on its path (a .pth file, as an
#                                      editable install would)
#   guest-sdk/typescript/node_modules  componentize-js (JavaScript to a component), esbuild
#                                      (TypeScript to one JavaScript module), typescript (tsc);
#                                      and preview2-shim, which componentize-js 0.23.0 imports
#                                      when it runs but lists only as a dev dependency
#
# Prints nothing when all is there; on failure, what went wrong.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
VENV=$ROOT/.cache/polyglot/venv
PY=${PYTHON:-python3}
COMPONENTIZE_PY_VERSION=0.25.1
PYTEST_VERSION=9.0.2

log=$(mktemp "${TMPDIR:-/tmp}/sluice-polyglot.XXXXXX.log")
trap 'rm -f "$log"' EXIT
fail() {
	tail -n 30 "$log" >&2
	echo "guest-sdk/setup.sh: $1" >&2
	exit 1
}

# ---------------------------------------------------------------- Python
if [[ ! -x $VENV/bin/python ]]; then
	if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
		bash "$ROOT/tests/setup.sh" python3-venv
	fi
	rm -rf "$VENV"
	"$PY" -m venv "$VENV" >"$log" 2>&1 || fail "$PY -m venv $VENV failed"
fi
installed() { "$VENV/bin/python" -m pip show "$1" 2>/dev/null | grep -qx "Version: $2"; }
if ! installed componentize-py "$COMPONENTIZE_PY_VERSION" || ! installed pytest "$PYTEST_VERSION"; then
	"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
		"componentize-py==$COMPONENTIZE_PY_VERSION" "pytest==$PYTEST_VERSION" >"$log" 2>&1 ||
		fail "pip install componentize-py==$COMPONENTIZE_PY_VERSION pytest==$PYTEST_VERSION failed"
fi
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$HERE/python" >"$site/sluice-sdk.pth"

# ---------------------------------------------------------------- TypeScript
bash "$ROOT/tests/setup.sh" --build # Node.js and npm
cd "$HERE/typescript"
if [[ ! -d node_modules || package-lock.json -nt node_modules ]]; then
	npm ci --no-audit --no-fund --loglevel=error >"$log" 2>&1 || fail "npm ci in guest-sdk/typescript failed"
	touch node_modules
fi
