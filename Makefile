# CRS: the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: run test lint fmt bench chart-test proto services

## run: build, start the four services on SQLite under ./data with Redis, and run the demo
run:
	@scripts/run.sh

## test: every test: unit tests and the cross-service end-to-end tests (PostgreSQL and SQLite)
test:
	@scripts/ensure-test-services.sh
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace

## lint: formatting and clippy, warnings as errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## proto: recompile the gRPC contracts (also happens on every build)
proto:
	$(CARGO) build -p crs-proto

## bench: rate limiter and SLA timer figures next to redis-benchmark in the same run (release build)
bench:
	@scripts/ensure-test-services.sh
	$(CARGO) bench -p crs-ratelimit
	$(CARGO) bench -p crs-timers

chart-test:
	@echo "no Helm chart in this version"
