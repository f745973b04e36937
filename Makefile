# optbench — `make bench` and `make test` set themselves up on a fresh clone.
# The venv is (re)built when pyproject.toml changes; nothing else needs installing by hand.
PY      ?= $(shell command -v python3.11 || command -v python3)
VENV    := .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PROFILE ?= quick
DEVICE  ?= cpu
DATA    ?= mnist
RESULTS ?= results
ARGS    ?=
METHODS := bgd,sgd,minibatch,momentum,rmsprop,adam

.PHONY: bench test report toy parity perf gpu-check clean

$(STAMP): pyproject.toml
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

# Quick sweep: 6 methods x 2 frameworks, each run in its own process, then the report.
bench: $(STAMP)
	$(PYTHON) -m bench -m framework=torch,tensorflow optimizer=$(METHODS) profile=$(PROFILE) \
	    device=$(DEVICE) data=$(DATA) results_dir=$(RESULTS) $(ARGS)
	$(PYTHON) -m bench.report $(RESULTS)

test: $(STAMP)
	$(PYTHON) -m pytest $(PYTEST_ARGS)

report: $(STAMP)
	$(PYTHON) -m bench.report $(RESULTS)

toy: $(STAMP)
	$(PYTHON) -m bench.toy

# Per-step proof that both frameworks compute the same math (reference impl of all six).
parity: $(STAMP)
	for m in bgd sgd minibatch momentum rmsprop adam; do \
	    $(PYTHON) -m bench.parity optimizer=$$m optimizer.impl=reference results_dir=$(RESULTS) $(ARGS) || exit 1; done

perf: $(STAMP)
	$(PYTHON) -m bench.perf results_dir=$(RESULTS) $(ARGS)

clean:
	rm -rf $(RESULTS)/runs $(RESULTS)/report $(RESULTS)/.hydra
