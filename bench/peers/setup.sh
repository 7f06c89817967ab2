#!/usr/bin/env bash
# Installs what `make bench-peers` needs, idempotently and quietly, under <repo>/.cache/bench-peers:
#
#   venv/                  Python venv with confluent-kafka (the harness and the plain Python
#                          peer) and pathway (the Pathway peer), from PyPI
#   streams/libs/          Kafka Streams 4.3.1 and Jackson, from Maven Central (streams/pom.xml)
#   streams/classes/       streams/src/TzStreams.java and WindowedStreams.java compiled with javac
#
# The harness cannot run without confluent-kafka, so failing to install it fails this script.
# A peer that cannot be installed does not: the reason goes to <cache>/<peer>.failed, and the
# harness reports that peer as failed with it.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=$ROOT/.cache/bench-peers
VENV=$CACHE/venv
PY=${PYTHON:-python3}
PATHWAY_VERSION=${PATHWAY_VERSION:-0.33.0}
CONFLUENT_KAFKA_VERSION=${CONFLUENT_KAFKA_VERSION:-2.16.1}
mkdir -p "$CACHE"

fail_peer() { # peer reason log
	{
		echo "$2"
		[[ -f ${3:-} ]] && tail -n 15 "$3" | sed 's/\x1b\[[0-9;]*m//g'
	} >"$CACHE/$1.failed"
	echo "bench/peers/setup.sh: $1: $2 (the benchmark reports it as failed)" >&2
}

# ---------------------------------------------------------------- Python venv
if [[ ! -x $VENV/bin/python ]]; then
	if ! "$PY" -m venv --help >/dev/null 2>&1 || ! "$PY" -c 'import ensurepip' 2>/dev/null; then
		bash "$ROOT/tests/setup.sh" python3-venv
	fi
	rm -rf "$VENV"
	"$PY" -m venv "$VENV" >/dev/null || { echo "bench/peers/setup.sh: python3 -m venv failed" >&2; exit 1; }
fi
pip() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"; }
if ! "$VENV/bin/python" -c 'import confluent_kafka' 2>/dev/null; then
	log=$CACHE/pip-confluent-kafka.log
	pip "confluent-kafka==$CONFLUENT_KAFKA_VERSION" >"$log" 2>&1 ||
		{ tail -n 20 "$log" >&2; echo "bench/peers/setup.sh: pip install confluent-kafka failed" >&2; exit 1; }
fi
if ! "$VENV/bin/python" -c 'import pathway' 2>/dev/null; then
	rm -f "$CACHE/pathway.failed"
	log=$CACHE/pip-pathway.log
	pip "pathway==$PATHWAY_VERSION" >"$log" 2>&1 ||
		fail_peer pathway "pip install pathway==$PATHWAY_VERSION failed" "$log"
else
	rm -f "$CACHE/pathway.failed"
fi

# ---------------------------------------------------------------- Kafka Streams
STREAMS=$CACHE/streams
SOURCES=("$HERE/streams/src/TzStreams.java" "$HERE/streams/src/WindowedStreams.java")
stamp=$(cat "$HERE/streams/pom.xml" "${SOURCES[@]}" | sha256sum | cut -d' ' -f1)
if [[ ! -f $STREAMS/.installed || $(<"$STREAMS/.installed") != "$stamp" ]]; then
	rm -f "$CACHE/kafka-streams.failed" "$STREAMS/.installed"
	mkdir -p "$STREAMS"
	log=$STREAMS/install.log
	if ! command -v mvn >/dev/null || ! command -v javac >/dev/null; then
		bash "$ROOT/tests/setup.sh" maven openjdk-17-jdk-headless || true
	fi
	if ! mvn -B -ntp -Dstyle.color=never -f "$HERE/streams/pom.xml" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$STREAMS/libs.tmp" >"$log" 2>&1; then
		fail_peer kafka-streams "fetching kafka-streams 4.3.1 from Maven Central failed" "$log"
	else
		rm -rf "$STREAMS/libs" && mv "$STREAMS/libs.tmp" "$STREAMS/libs"
		rm -rf "$STREAMS/classes" && mkdir -p "$STREAMS/classes"
		if javac -nowarn -d "$STREAMS/classes" -cp "$STREAMS/libs/*" "${SOURCES[@]}" >>"$log" 2>&1; then
			echo "$stamp" >"$STREAMS/.installed"
		else
			fail_peer kafka-streams "javac TzStreams.java WindowedStreams.java failed" "$log"
		fi
	fi
fi
