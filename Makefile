# CRS: the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: run test lint fmt fuzz bench chart-test chart proto services

## run: build, start the four services on SQLite under ./data with Redis, and run the demo
run:
	@scripts/run.sh

## test: every test: unit tests, the cross-service end-to-end tests (PostgreSQL and SQLite) and the Helm chart's
test:
	@scripts/ensure-test-services.sh
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace
	@scripts/chart-test.sh

## lint: formatting and clippy, warnings as errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## fuzz: the property tests over untrusted input (tokens, page tokens, submissions, URLs, the state
## machine) with many more cases than `make test` runs (FUZZ_CASES, default 100000), optimised
FUZZ_CASES ?= 100000
fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --release -p crs-platform --test fuzz_tokens
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --release -p crs-intake --test fuzz_validation
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test --release -p crs-domain --test state_machine

## proto: recompile the gRPC contracts (also happens on every build)
proto:
	$(CARGO) build -p crs-proto

## bench: intake's submissions beside the gRPC and durable-write ceilings measured in the same run,
## the hops at a fixed rate, SQLite, the rate limiter and the SLA timers; writes bench/RESULTS.md
bench:
	@scripts/bench.sh

## chart-test: the Helm chart rendered by Helm's engine, linted, validated against Kubernetes' schemas,
## and its configuration checked by the service binaries it runs (--check-config)
chart-test:
	$(CARGO) build --workspace --bins
	@scripts/chart-test.sh

## chart: package the Helm chart into dist/
chart:
	@scripts/chart-test.sh --package dist
