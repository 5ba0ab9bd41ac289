# margin_pipeline — every command sets itself up from a fresh clone.
#   make demo   generate 200 meters x 30 days, ingest, run the chain, print the summary
#   make test   the test suite (what CI runs): on Sail, plus one property-test seed on local Spark
#   make ui     the Dagster UI on http://127.0.0.1:3000
#   make wheel  dist/margin_pipeline-<version>-py3-none-any.whl, what Databricks job clusters install
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export MARGIN_PIPELINE_ROOT ?= $(CURDIR)/.margin

.PHONY: install demo test ui lint bench wheel clean-data
.DEFAULT_GOAL := demo

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[local,dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/margin-pipeline generate --meters 200 --days 30 --seed 7
	$(BIN)/margin-pipeline run

# The suite runs on the embedded engine (Sail), in two xdist workers: its end-to-end tests wait on
# daemon chains (sensor ticks, run queues, process starts) about a third of the time, so two keep
# 2 cores busier; the tests sharing one chain are one group (--dist loadgroup). One seed of the
# property test (incremental equals a full recompute) also runs on local Spark where Java is
# installed, in a pytest of its own (test_engines.py): what clusters run must agree.
test: install
	$(BIN)/python -m pytest -n 2 --dist loadgroup

lint: install
	$(BIN)/ruff check margin_pipeline margin_pipeline_tests benchmarks
	$(BIN)/ruff format --check margin_pipeline margin_pipeline_tests benchmarks
	$(BIN)/mypy
	home=$$(mktemp -d) && touch $$home/dagster.yaml && DAGSTER_HOME=$$home $(BIN)/dg check defs; status=$$?; rm -rf $$home; exit $$status

ui: install
	$(BIN)/margin-pipeline ui

bench: install
	$(BIN)/python -m benchmarks.ingest_throughput

wheel: install
	rm -rf build dist/margin_pipeline-*.whl
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .
	rm -rf build
	@ls dist/margin_pipeline-*.whl

clean-data:
	rm -rf $(MARGIN_PIPELINE_ROOT)
