#!/usr/bin/env bash
# Runs the whole comparison: every store at 1M and 10M keys, one process each.
# Usage: bench/store-choice/run-all.sh [N ...]   (default: 1000000 10000000)
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-../../target/store-choice}"
cargo build --release
bin="$CARGO_TARGET_DIR/release/store-choice"
sizes=("${@:-1000000 10000000}")
for n in ${sizes[@]}; do
  for store in redb fjall heed; do
    "$bin" "$store" "$n" 2>/dev/null | grep '^RESULT'
  done
done
