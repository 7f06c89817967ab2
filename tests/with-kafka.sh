#!/usr/bin/env bash
# Runs a command next to a fresh real Kafka broker on loopback, exported to it as
# SLUICE_TEST_KAFKA=host:port, and stops the broker however the command ends. Each run has its
# own state folder (SLUICE_BROKER_DIR), so runs can overlap.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export SLUICE_BROKER_DIR="$here/../.cache/kafka/run-$$"
SLUICE_TEST_KAFKA=$(bash "$here/kafka/broker.sh" start)
export SLUICE_TEST_KAFKA
trap 'bash "$here/kafka/broker.sh" stop >/dev/null 2>&1 || true; rm -rf "$SLUICE_BROKER_DIR"' EXIT
"$@"
