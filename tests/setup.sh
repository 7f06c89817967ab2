#!/usr/bin/env bash
# Installs the Debian packages the tests need. Idempotent and silent when all
# is already there; `apt-get update` runs only if something is missing.
#
#   bash tests/setup.sh            the packages below
#   bash tests/setup.sh --build    only what building needs (Node.js and npm, for the dashboard)
#   bash tests/setup.sh PKG...     those too
set -euo pipefail

# Building: web-ui/build.sh needs Node.js and npm (the Rust toolchain and a C compiler are
# prerequisites, see the README).
PACKAGES=()
command -v node >/dev/null || PACKAGES+=(nodejs)
command -v npm >/dev/null || PACKAGES+=(npm)
if [[ ${1:-} == --build ]]; then
	shift
else
	# Add test dependencies here.
	PACKAGES+=(
		kcat # produce/consume from tests and shell; broker.sh's readiness probe
	)
	# tests/browser/dashboard.mjs drives Debian's Chromium headless with playwright-core (which
	# downloads no browser of its own).
	PACKAGES+=(chromium)
	# tests/kafka/broker.sh runs Kafka on a JVM and resolves its jars with Maven;
	# add them only when missing so a JDK installed some other way is left alone.
	command -v java >/dev/null || PACKAGES+=(openjdk-17-jre-headless)
	command -v mvn >/dev/null || PACKAGES+=(maven)
fi
PACKAGES+=("$@")

missing=()
for pkg in ${PACKAGES[@]+"${PACKAGES[@]}"}; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$pkg")
done
((${#missing[@]} == 0)) && exit 0

sudo=()
((EUID == 0)) || sudo=(sudo)
log=$(mktemp "${TMPDIR:-/tmp}/sluice-setup.XXXXXX.log")
if ! {
	"${sudo[@]}" apt-get update -qq &&
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
} >"$log" 2>&1; then
	tail -n 30 "$log" >&2
	echo "tests/setup.sh: installing ${missing[*]} failed (full log: $log)" >&2
	exit 1
fi
rm -f "$log"
echo "tests/setup.sh: installed ${missing[*]}" >&2
