# The README's two commands: `make run` runs the whole service, `make test` runs the tests.
# Each creates .venv when missing and installs what it needs.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# PostgreSQL for the test suite's second database (the suite runs on SQLite and PostgreSQL); podman, runc
# and a static busybox for the Docker source's tests (podman serves the Docker Engine API).
system-deps:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
	@command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 && test -x /bin/busybox || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc busybox-static >/dev/null; }

run: $(STAMP)
	$(BIN)/sluice up $(ARGS)

test: $(STAMP) system-deps
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

# BENCH=documents runs benchmarks/documents (ingestion API latency and throughput) instead;
# BENCH=connectors runs benchmarks/connectors (a 1M-row CSV sync against a raw load);
# BENCH=similarity runs benchmarks/similarity (image embeddings: recall, query latency, throughput).
bench: $(STAMP)
	$(BIN)/python -m benchmarks.$(or $(BENCH),reindex) $(ARGS)

clean:
	rm -rf $(VENV) .sluice
