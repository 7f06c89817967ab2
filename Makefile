# Sluice: `make test` is what CI runs; `make bench` prints the performance figures.
CARGO       ?= cargo
WASM_TARGET := wasm32-wasip2
GUESTS      := -p tz-normaliser -p pii-stripper -p enricher -p windowed-aggregate -p stream-join -p test-guest -p plain-guest

.PHONY: build install ui wasm fmt clippy test bench bench-peers bench-fleet demo toolchain setup setup-build

## build: the `sluice` binary (release, dashboard embedded) and every transform component;
## needs the Rust toolchain and a C compiler, and installs Node.js if missing (nothing for tests)
build: ui wasm
	$(CARGO) build --release -p sluice

## install: `build`, then the binary into ~/.cargo/bin (on the PATH with rustup)
install: build
	$(CARGO) install --locked --path runtime --target-dir target

## ui: the dashboard (TypeScript) into web-ui/dist, which the `sluice` binary embeds
ui: setup-build
	@bash web-ui/build.sh

## demo: everything in one process: an embedded broker, generators, pipelines, the dashboard
demo: build
	target/release/sluice demo

## wasm: every transform and test guest, for wasm32-wasip2, into target/wasm32-wasip2/release
## (optimised across crates, in one code unit: 1.3x the records per second of the default
## release profile in `make bench`; the host's release build keeps its faster settings)
wasm: toolchain
	CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
		$(CARGO) build --quiet --release --target $(WASM_TARGET) $(GUESTS)

## fmt: fails on Rust code that `cargo fmt` would change
fmt:
	$(CARGO) fmt --all --check

## clippy: every crate and target, warnings as errors
clippy:
	$(CARGO) clippy --quiet --workspace --all-targets -- -D warnings

## test: formatting and lints first (cheapest first), then all tests, against a real Apache
## Kafka broker started for the run
test: fmt clippy setup ui wasm
	bash tests/with-kafka.sh $(CARGO) test --workspace

## bench: engine boundary cost, Wasm versus native, end to end on a real broker, start-up and the
## demo's memory (release); targets met or missed, kept in bench/results/latest.json
bench: setup ui wasm
	$(CARGO) build --quiet --release -p sluice -p sluice-bench
	bash tests/with-kafka.sh target/release/sluice-bench

## bench-fleet: one pipeline run by fleets of 1, 2 and 3 `sluice run` processes on one real
## broker; the rate of each and its ratio to one member's (release)
bench-fleet: setup ui wasm
	$(CARGO) build --quiet --release -p sluice -p sluice-bench
	bash tests/with-kafka.sh target/release/sluice-bench fleet

## bench-peers: Sluice against its limit, Kafka Streams, Pathway and plain Python on one real
## broker; writes bench/peers/results/peers.json and peers.md (installs the peers under .cache/)
bench-peers: setup ui wasm
	$(CARGO) build --quiet --release -p sluice
	@bash bench/peers/setup.sh
	bash tests/with-kafka.sh .cache/bench-peers/venv/bin/python bench/peers/harness.py

## toolchain: the wasm32-wasip2 target (rustup, or the bundled copy beside the repo)
toolchain:
	@test -d "$$(rustc --print sysroot)/lib/rustlib/$(WASM_TARGET)/lib" \
		|| rustup target add $(WASM_TARGET) >/dev/null 2>&1 \
		|| bash ../shared/toolchain/ensure-wasm32-wasip2

## setup-build: what building needs beyond Rust (Node.js, npm)
setup-build:
	@bash tests/setup.sh --build

## setup: Debian packages and the Kafka jars the tests need (idempotent, quiet)
setup:
	@bash tests/setup.sh
	@bash tests/kafka/broker.sh install
	@bash tests/fuzz/setup.sh
