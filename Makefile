# The commands README shows, by name. Every target runs exactly what README or
# .ci/run runs; nothing here is needed to build or test the project.

.PHONY: run build test ci bench load

# Run the service (embedded broker and store under ./data unless KAFKA_BROKERS /
# MONGODB_URI are set).
run:
	go run .

# Build the binary, ./order-gateway.
build:
	go build -o order-gateway .

# README's test command: the real server on the embedded broker and store.
test:
	go test -race -count=1 ./...

# Everything CI runs: format, vet, generated code, tests, fuzz targets, the
# in-process bench, and the suites on Apache Kafka and PostgreSQL.
ci:
	.ci/run

# The in-process diagnostics (go run ./cmd/bench -short is what CI runs).
bench:
	go run ./cmd/bench

# The headline benchmark: the real binary over HTTP from another process, beside
# a plain service (see BENCHMARKS.md); STACK=kafka or STACK=kafka-postgres for
# the production path.
STACK ?= embedded
load:
	go run ./cmd/load -stack $(STACK)
