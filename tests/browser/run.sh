#!/usr/bin/env bash
# Runs a browser test of the dashboard (dashboard.mjs, or the script named first, such as
# fleet.mjs; the other arguments passed through) after installing playwright-core under
# tests/browser/ when missing or outdated. Quiet when all is in place.
# Needs Debian's chromium (bash tests/setup.sh) and Node.js (web-ui/build.sh installs it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
stamp=$here/node_modules/.sluice-installed
want=$(cd "$here" && cat package.json package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" || ! -d $here/node_modules/playwright-core ]]; then
	log=$(mktemp "${TMPDIR:-/tmp}/sluice-browser.XXXXXX.log")
	if [[ -f $here/package-lock.json ]]; then cmd=ci; else cmd=install; fi
	if ! (cd "$here" && npm "$cmd" --no-audit --no-fund --loglevel=error >"$log" 2>&1); then
		tail -n 40 "$log" >&2
		echo "tests/browser/run.sh: npm $cmd failed" >&2
		exit 1
	fi
	rm -f "$log"
	(cd "$here" && cat package.json package-lock.json) | sha256sum | cut -d' ' -f1 >"$stamp"
fi
script=dashboard.mjs
if [[ ${1:-} == *.mjs ]]; then
	script=$1
	shift
fi
exec node "$here/$script" "$@"
