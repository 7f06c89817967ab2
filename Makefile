# Sluice: `make test` is what CI runs; `make bench` prints the performance figures.
CARGO       ?= cargo
WASM_TARGET := wasm32-wasip2
GUESTS      := -p tz-normaliser -p pii-stripper -p enricher -p windowed-aggregate -p stream-join -p test-guest -p plain-guest

# Python and TypeScript: the pinned tools guest-sdk/setup.sh installs, and what they build.
PYTHON      := .cache/polyglot/venv/bin/python
SLUICE_TS   := node guest-sdk/typescript/bin/sluice-ts.mjs
POLYGLOT    := target/polyglot
PY_SDK      := $(shell find guest-sdk/python/sluice_sdk -type f -not -path '*/__pycache__/*' 2>/dev/null)
TS_SDK      := $(shell find guest-sdk/typescript/src guest-sdk/typescript/bin guest-sdk/typescript/wit -type f 2>/dev/null)
POLYGLOT_WASM := $(POLYGLOT)/email_mask_python.wasm $(POLYGLOT)/email_mask_typescript.wasm \
	$(POLYGLOT)/tz_normaliser_typescript.wasm $(POLYGLOT)/sandbox_python.wasm \
	$(POLYGLOT)/sandbox_typescript.wasm $(POLYGLOT)/contract_0_2.wasm

.PHONY: build install ui wasm polyglot fmt clippy test test-polyglot bench bench-peers bench-fleet demo toolchain setup setup-build setup-polyglot

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

## polyglot: the Python and TypeScript examples and test guests, into target/polyglot
## (componentize-py and componentize-js, pinned, installed under .cache/ and node_modules/)
polyglot: setup-polyglot $(POLYGLOT_WASM)

$(POLYGLOT)/email_mask_python.wasm: $(wildcard transforms/email-mask-python/*.py) $(PY_SDK)
	cd transforms/email-mask-python && $(CURDIR)/$(PYTHON) -m sluice_sdk build email_mask:EmailMask -o $(CURDIR)/$@ >/dev/null

$(POLYGLOT)/sandbox_python.wasm: tests/guests/sandbox-python/sandbox.py $(PY_SDK)
	cd tests/guests/sandbox-python && $(CURDIR)/$(PYTHON) -m sluice_sdk build sandbox:Sandbox -o $(CURDIR)/$@ >/dev/null

$(POLYGLOT)/email_mask_typescript.wasm: $(wildcard transforms/email-mask-typescript/src/*.ts) $(TS_SDK)
	$(SLUICE_TS) build transforms/email-mask-typescript/src/email_mask.ts -o $@ >/dev/null

$(POLYGLOT)/tz_normaliser_typescript.wasm: $(wildcard transforms/tz-normaliser-typescript/src/*.ts) $(TS_SDK)
	$(SLUICE_TS) build transforms/tz-normaliser-typescript/src/tz_normaliser.ts -o $@ >/dev/null

$(POLYGLOT)/sandbox_typescript.wasm: tests/guests/sandbox-typescript/sandbox.ts $(TS_SDK)
	$(SLUICE_TS) build tests/guests/sandbox-typescript/sandbox.ts -o $@ >/dev/null

# A transform built against the contract's next version, which this runtime must refuse by name.
$(POLYGLOT)/contract_0_2.wasm: tests/guests/contract-0.2/transform.js wit/transform.wit
	@mkdir -p $(POLYGLOT)/wit-0.2.0
	sed 's/@0\.1\.0/@0.2.0/g' wit/transform.wit > $(POLYGLOT)/wit-0.2.0/transform.wit
	guest-sdk/typescript/node_modules/.bin/componentize-js --wit $(POLYGLOT)/wit-0.2.0 \
		--world-name transformer --disable http --disable fetch-event --out $@ $< >/dev/null

## test-polyglot: the Python and TypeScript SDKs' and examples' own tests, natively
## (pytest, node's test runner) and the TypeScript type check
test-polyglot: setup-polyglot
	$(PYTHON) -m pytest -q -p no:cacheprovider guest-sdk/python transforms/email-mask-python
	for dir in guest-sdk/typescript transforms/tz-normaliser-typescript transforms/email-mask-typescript; do \
		(cd $$dir && npm run --silent check && npm test --silent) || exit 1; \
	done

## fmt: fails on Rust code that `cargo fmt` would change
fmt:
	$(CARGO) fmt --all --check

## clippy: every crate and target, warnings as errors
clippy:
	$(CARGO) clippy --quiet --workspace --all-targets -- -D warnings

## test: formatting and lints first (cheapest first), then all tests, against a real Apache
## Kafka broker started for the run
test: fmt clippy setup ui wasm polyglot test-polyglot
	bash tests/with-kafka.sh $(CARGO) test --workspace

## bench: engine boundary cost, Wasm versus native, end to end on a real broker, start-up and the
## demo's memory (release); targets met or missed, kept in bench/results/latest.json
bench: setup ui wasm polyglot
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

## setup-polyglot: componentize-py, pytest, componentize-js, esbuild and tsc, pinned (idempotent, quiet)
setup-polyglot:
	@bash guest-sdk/setup.sh

## setup: Debian packages and the Kafka jars the tests need (idempotent, quiet)
setup: setup-polyglot
	@bash tests/setup.sh
	@bash tests/kafka/broker.sh install
	@bash tests/fuzz/setup.sh
