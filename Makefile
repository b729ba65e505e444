# soaes-bench: `make run` evaluates the embedded model, `make test` runs the tests. Both set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test check reports data bench clean

install: $(STAMP)

# Re-installs only when pyproject.toml changes; a plain venv + pip, exact pins (torch==2.13.0 is the CPU wheel).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip==26.3"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

run: install
	$(BIN)/soaes-bench run --suite all --output reports/latest

test: install
	$(BIN)/python -m pytest

check: install
	$(BIN)/soaes-bench run --suite all --output reports/latest
	$(BIN)/soaes-bench check --baseline reports/baseline/results.json --results reports/latest/results.json --policy reports/policy.yaml

data: install
	$(BIN)/soaes-bench data build
	$(BIN)/soaes-bench data check

bench: install
	$(BIN)/python benchmarks/bench_metrics.py

clean:
	rm -rf $(VENV) build dist .pytest_cache reports/latest
