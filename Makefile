# make train | test | test-slow | lint | bench | trilemma | digits-report — each creates .venv and installs on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: install train test test-slow lint bench trilemma digits-report clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install -e ".[dev,offline-metrics]"
	touch $(STAMP)

install: $(STAMP)

## Train the default experiment (25-Gaussians, CPU, a few minutes); extra Hydra overrides via ARGS="..."
train: $(STAMP)
	$(PY) -m src.train $(ARGS)

## The default test suite (CPU, offline, minutes)
test: $(STAMP)
	$(PY) -m pytest -q

## Slow checks: full-size networks, long training
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

## Ruff over src, tests and benchmarks
lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

## Benchmarks: writes benchmarks/results/*.json
bench: $(STAMP)
	$(PY) -m benchmarks.run_all

## Trilemma report on 25-Gaussians: DDGAN T=1,2,4,8 vs a Gaussian denoiser (CPU, < 30 min); overrides via ARGS="..."
trilemma: $(STAMP)
	$(PY) -m src.trilemma $(ARGS)

## Image trilemma on stacked digits: DDGAN T=1,2,4 vs a DDPM with the same NCSN++, S=4,20,100; overrides via ARGS="..."
digits-report: $(STAMP)
	$(PY) -m src.digits_report $(ARGS)

clean:
	rm -rf $(VENV) logs outputs multirun .pytest_cache
