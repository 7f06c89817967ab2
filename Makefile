# Sluice: `make test` is what CI runs; `make bench` prints the performance figures.
CARGO       ?= cargo
WASM_TARGET := wasm32-wasip2
GUESTS      := -p tz-normaliser -p pii-stripper -p enricher -p test-guest

.PHONY: build wasm test bench toolchain setup

## build: the `sluice` binary (release) and every transform component
build: wasm
	$(CARGO) build --release -p sluice

## wasm: every transform and test guest, for wasm32-wasip2, into target/wasm32-wasip2/release
wasm: toolchain
	$(CARGO) build --quiet --release --target $(WASM_TARGET) $(GUESTS)

## test: all tests, against a real Apache Kafka broker started for the run
test: setup wasm
	bash tests/with-kafka.sh $(CARGO) test --workspace

## bench: engine boundary cost, Wasm versus native, and end to end on a real broker (release)
bench: setup wasm
	$(CARGO) build --quiet --release -p sluice-bench
	bash tests/with-kafka.sh target/release/sluice-bench

## toolchain: the wasm32-wasip2 target (rustup, or the bundled copy beside the repo)
toolchain:
	@test -d "$$(rustc --print sysroot)/lib/rustlib/$(WASM_TARGET)/lib" \
		|| rustup target add $(WASM_TARGET) >/dev/null 2>&1 \
		|| bash ../shared/toolchain/ensure-wasm32-wasip2

## setup: Debian packages and the Kafka jars the tests need (idempotent, quiet)
setup:
	@bash tests/setup.sh
	@bash tests/kafka/broker.sh install
