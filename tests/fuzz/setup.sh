#!/usr/bin/env bash
# Installs schemathesis (PyPI), which tests/api_fuzz.rs runs against the API's OpenAPI document,
# into <repo>/.cache/fuzz-venv. Idempotent and silent when it is there.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV=$ROOT/.cache/fuzz-venv
VERSION=4.32.5
if [[ -x $VENV/bin/schemathesis ]] && "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$VERSION"; then
	exit 0
fi
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
	bash "$ROOT/tests/setup.sh" python3-venv
fi
log=$(mktemp "${TMPDIR:-/tmp}/sluice-fuzz-setup.XXXXXX.log")
rm -rf "$VENV"
if ! { python3 -m venv "$VENV" && "$VENV/bin/python" -m pip install -q --disable-pip-version-check "schemathesis==$VERSION"; } >"$log" 2>&1; then
	tail -n 20 "$log" >&2
	echo "tests/fuzz/setup.sh: installing schemathesis $VERSION failed (full log: $log)" >&2
	exit 1
fi
rm -f "$log"
echo "tests/fuzz/setup.sh: installed schemathesis $VERSION" >&2
