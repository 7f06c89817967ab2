#!/usr/bin/env bash
# Builds the dashboard into web-ui/dist (index.html, app.js, app.css): generates the API's
# TypeScript types (src/api.gen.ts) from the OpenAPI document the runtime serves
# (runtime/src/api/openapi.json, itself generated from the Rust types and checked by
# `cargo test -p sluice --lib api`), type-checks with tsc, bundles with esbuild. Idempotent and quiet: installs Node.js and npm with apt-get if missing,
# runs `npm ci` only when node_modules is missing or older than package-lock.json, and rebuilds
# only when a source changed. Prints nothing on success; on failure, what went wrong.
#
#   bash web-ui/build.sh            build if needed
#   bash web-ui/build.sh --force    build anyway
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
force=false
[[ ${1:-} == --force ]] && force=true

log=$(mktemp "${TMPDIR:-/tmp}/sluice-web-ui.XXXXXX.log")
trap 'rm -f "$log"' EXIT
fail() {
	tail -n 40 "$log" >&2
	echo "web-ui/build.sh: $1" >&2
	exit 1
}

# Node.js and npm: Debian's packages when missing (the same pattern as tests/setup.sh).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	sudo=()
	((EUID == 0)) || sudo=(sudo)
	{
		"${sudo[@]}" apt-get update -qq &&
			"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
	} >"$log" 2>&1 || fail "installing nodejs and npm failed"
	echo "web-ui/build.sh: installed nodejs and npm" >&2
fi

# Dependencies: reinstalled when package.json or package-lock.json changed since the last install.
stamp=node_modules/.sluice-installed
want=$(cat package.json package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" || ! -x node_modules/.bin/esbuild || ! -x node_modules/.bin/tsc || ! -x node_modules/.bin/openapi-typescript ]]; then
	npm_flags=(--no-audit --no-fund --loglevel=error --ignore-scripts=false)
	if [[ -f package-lock.json ]]; then
		npm ci "${npm_flags[@]}" >"$log" 2>&1 || fail "npm ci failed"
	else
		npm install "${npm_flags[@]}" >"$log" 2>&1 || fail "npm install failed"
		want=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)
	fi
	echo "$want" >"$stamp"
	force=true
fi

# The API's types, generated (not kept in git) whenever the OpenAPI document changed, so that tsc
# fails wherever the dashboard and the API disagree.
openapi=../runtime/src/api/openapi.json
types=src/api.gen.ts
if $force || [[ ! -f $types || $openapi -nt $types ]]; then
	node_modules/.bin/openapi-typescript "$openapi" --output "$types.tmp" >"$log" 2>&1 ||
		fail "openapi-typescript could not read $openapi"
	mv "$types.tmp" "$types"
fi

# Up to date: dist exists and no source is newer than the last build.
built=node_modules/.sluice-built
if ! $force && [[ -f $built && -f dist/index.html && -f dist/app.js && -f dist/app.css ]] &&
	[[ -z $(find src index.html package.json package-lock.json tsconfig.json build.sh -newer "$built" -print -quit 2>/dev/null) ]]; then
	exit 0
fi

node_modules/.bin/tsc --noEmit -p tsconfig.json >"$log" 2>&1 || fail "type errors (tsc --noEmit)"

rm -rf dist.tmp
mkdir -p dist.tmp
node_modules/.bin/esbuild src/main.ts \
	--bundle --minify --target=es2020,chrome100,firefox100,safari15 \
	--format=iife --legal-comments=none --log-level=warning \
	--outfile=dist.tmp/app.js >"$log" 2>&1 || fail "esbuild failed"
cp index.html dist.tmp/index.html
rm -rf dist
mv dist.tmp dist
touch "$built"
