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
MODEL   ?= mlp
# Your own models, outside the repository: MODELS_DIR=~/my-models holds model/<MODEL>.yaml. Hydra's
# commands find it through hydra.searchpath, bench.perf and bench.scaling by the file's path.
MODELS_DIR ?=
SEARCH    := $(if $(MODELS_DIR),'hydra.searchpath=[file://$(abspath $(MODELS_DIR))]')
MODEL_ARG := $(if $(MODELS_DIR),$(abspath $(MODELS_DIR))/model/$(MODEL).yaml,$(MODEL))
comma := ,
space := $(subst ,, )
# The tutorial's six methods, and every other conf/optimizer/ file: the methods beyond the tutorial
# (a new optimizer is picked up here without editing this file).
TUTORIAL := bgd sgd minibatch momentum rmsprop adam
BEYOND   := $(filter-out $(TUTORIAL),$(sort $(basename $(notdir $(wildcard conf/optimizer/*.yaml)))))
METHODS  := $(subst $(space),$(comma),$(strip $(TUTORIAL) $(BEYOND)))

.PHONY: help bench test test-fast test-all lint report toy parity perf gpu-check gpu-pack clean tune gpu-env local-slurm clean-envs scaling

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The installer itself, pinned: Python 3.11's bundled pip 23 downloads whole wheels (3 GB for
# make gpu-env's CUDA pins) where pip 26 reads their metadata, and installs slower.
PIP_PIN := pip==26.3

$(STAMP): pyproject.toml Makefile
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check $(PIP_PIN)
	@# The log is shown when the install fails; on success it keeps setuptools' editable-install notice.
	$(PYTHON) -m pip install -q --disable-pip-version-check --no-compile -e '.[dev]' > $(VENV)/install.log 2>&1 \
		|| { cat $(VENV)/install.log; exit 1; }
	@# pip byte-compiles 7 GB of packages on one core; compileall does the same on every core.
	@# It exits 1 for the few files in site-packages that are not Python 3 (pip ignores those too).
	$(PYTHON) -m compileall -q -j 0 "$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
		> /dev/null 2>&1 || true
	touch $@

# Learning-rate grids swept by PROFILE=full: about 4 values around each method's default (the
# tutorial's lr among them). Kept here rather than in conf/optimizer/, where a new key would
# change every run_id.
LRS_bgd       := 0.01,0.03,0.1,0.3
LRS_sgd       := 0.001,0.003,0.01,0.03
LRS_minibatch := 0.003,0.01,0.03,0.1
LRS_momentum  := 0.03,0.1,0.3,1.0
LRS_rmsprop   := 0.0003,0.001,0.003,0.01
LRS_adam      := 0.0003,0.001,0.003,0.01
TIMING_BUDGET ?= 200
# Seeds of the quick sweep: the claims' accuracy verdicts need an interval, and one seed gives none.
# The methods beyond the tutorial make no claim: one seed each shows their curves and times them.
BENCH_SEEDS ?= 3
BEYOND_SEEDS ?= 1
FRAMEWORKS := $(subst $(space),$(comma),$(sort $(basename $(notdir $(wildcard conf/framework/*.yaml)))))
# hydra/hydra_logging=disabled: no list of every job before a sweep (a line per run); the sweep's
# own progress lines say what runs and what is left.
SWEEP = $(PYTHON) -m bench -m framework=$(FRAMEWORKS) profile=$(PROFILE) device=$(DEVICE) data=$(DATA) \
	model=$(MODEL) $(SEARCH) results_dir=$(RESULTS) hydra/hydra_logging=disabled $(ARGS)

# Quick sweep: 6 methods x 3 frameworks, each run in its own process (PROFILE=full: each method
# over its LRS_ grid), then the tutorial's toy paths, the step-by-step parity check, the timing
# pass (each configuration's time per step, interleaved rounds on an otherwise idle machine,
# about TIMING_BUDGET seconds) and the report. The report is built even when some run failed
# (it lists them); make still exits with the sweep's non-zero status then.
bench: $(STAMP) ## sweep every method x framework on one model, toy, parity, timing pass, report (MODEL MODELS_DIR PROFILE DATA DEVICE ARGS)
	status=0; \
	$(if $(filter full,$(PROFILE)),$(foreach m,$(TUTORIAL) $(BEYOND),\
	    $(SWEEP) optimizer=$(m) $(if $(LRS_$(m)),optimizer.lr=$(LRS_$(m))) seeds=$(BENCH_SEEDS) || status=$$?; \
	    [ $$status -eq 2 ] && exit 2;),\
	    $(SWEEP) optimizer=$(subst $(space),$(comma),$(TUTORIAL)) seeds=$(BENCH_SEEDS) || status=$$?; \
	    [ $$status -eq 2 ] && exit 2; \
	    $(if $(BEYOND),$(SWEEP) optimizer=$(subst $(space),$(comma),$(BEYOND)) seeds=$(BEYOND_SEEDS) || status=$$?;)) \
	[ $$status -eq 2 ] && exit 2; \
	$(PYTHON) -m bench.toy out=$(RESULTS)/toy || status=$$?; \
	$(PARITY) || status=$$?; \
	$(PYTHON) -m bench.timing results_dir=$(RESULTS) budget_s=$(TIMING_BUDGET) || status=$$?; \
	$(PYTHON) -m bench.report results_dir=$(RESULTS) || status=$$?; \
	exit $$status

# Three pytest workers on two cores: the tests spend a fifth of their time waiting (on child
# processes, Slurm, the network), and a third worker fills it. An xdist_group stays on one worker.
WORKERS ?= 3
XDIST   := -n $(WORKERS) --dist loadgroup

test: $(STAMP) ## the suite: everything but the stress tests (14.2 min on 2 cores, 2026-12-03)
	$(PYTHON) -m pytest -m "not stress" $(XDIST) $(PYTEST_ARGS)

test-fast: $(STAMP) ## the edit loop: no slow, browser or stress tests (about 1.3 min, 1.6-2 in a slow hour)
	$(PYTHON) -m pytest -m "not slow and not browser and not stress" $(XDIST) $(PYTEST_ARGS)

test-all: $(STAMP) ## everything, the stress tests included (what CI runs)
	$(PYTHON) -m pytest $(XDIST) $(PYTEST_ARGS)

lint: $(STAMP) ## ruff, with the config in pyproject.toml
	$(PYTHON) -m ruff check .

report: $(STAMP) ## rebuild results/report from results/runs
	$(PYTHON) -m bench.report results_dir=$(RESULTS)

toy: $(STAMP) ## the tutorial's x² toy and Rosenbrock paths in every framework
	$(PYTHON) -m bench.toy out=$(RESULTS)/toy

# Per-step proof that the frameworks compute the same math: every method with its rule as written
# (reference), and with the native optimizers to show what differs there.
PARITY_IMPLS ?= reference,native
# A variable, not $(MAKE) parity inside bench's recipe: make runs any recipe line holding $(MAKE)
# even under make -n, and bench's recipe is one line, so make -n bench would have run the sweep.
PARITY = $(PYTHON) -m bench.parity -m optimizer=$(METHODS) optimizer.impl=$(PARITY_IMPLS) model=$(MODEL) \
	$(SEARCH) results_dir=$(RESULTS) $(PARITY_ARGS)
parity: $(STAMP) ## step-by-step agreement of the frameworks, every method, reference and native (MODEL)
	$(PARITY)

# Batch-size scaling: Adam (native) at batch sizes 1 to the full set, every framework, the mlp and
# lenet5 models, each framework's faster mode, under the timing pass's protocol (several worker
# processes per configuration, interleaved rounds, the CPU lock held exclusively). About 10 minutes
# on 2 cores, so not part of make bench; make report draws it when results/scaling/ holds one.
SCALING_BUDGET ?= 150
scaling: $(STAMP) ## samples/s against batch size per framework and model, with the FLOP floor (ARGS)
	$(PYTHON) -m bench.scaling results_dir=$(RESULTS) budget_s=$(SCALING_BUDGET) $(ARGS)

perf: $(STAMP) ## the harness against the tutorial's naive loops and the FLOP floor
	$(PYTHON) -m bench.perf results_dir=$(RESULTS) model=$(MODEL_ARG) $(ARGS)

# On a CUDA box with torch preinstalled and no network: needs torch and numpy only (no venv,
# no Hydra, no TensorFlow). Outputs go to $OUT if set, else results/gpu_check.
GPU_PYTHON ?= python3
gpu-check: ## on a GPU box with torch (and JAX) only: every method and mode on the GPU
	$(GPU_PYTHON) -m bench.perf.gpu_check $(ARGS)

# Before sending the checkout to a GPU box: copy Fashion-MNIST into data/ (git-ignored) so it travels.
gpu-pack: ## copy Fashion-MNIST into data/ so it travels to a GPU box
	mkdir -p data/fashion_mnist && cp /usr/share/datasets/fashion-mnist/*.gz data/fashion_mnist/

# TensorFlow on a GPU: tensorflow[and-cuda] at the version pyproject pins for tensorflow-cpu, plus the
# other dependencies minus torch and JAX (scripts/tf-gpu-requirements). TensorFlow runs with
# device=cuda use .venv-tf-gpu/bin/python by themselves once it exists (framework.python overrides).
TF_GPU_VENV := .venv-tf-gpu
gpu-env: $(TF_GPU_VENV)/.installed ## .venv-tf-gpu: TensorFlow with CUDA, used by device=cuda TensorFlow runs
$(TF_GPU_VENV)/.installed: pyproject.toml scripts/tf-gpu-requirements
	test -x $(TF_GPU_VENV)/bin/python || $(PY) -m venv $(TF_GPU_VENV)
	$(TF_GPU_VENV)/bin/python -m pip install -q --disable-pip-version-check $(PIP_PIN)
	$(PY) scripts/tf-gpu-requirements > $(TF_GPU_VENV)/requirements.txt
	$(TF_GPU_VENV)/bin/python -m pip install -q --disable-pip-version-check -r $(TF_GPU_VENV)/requirements.txt
	$(TF_GPU_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

# A one-node Slurm cluster on this machine for hydra/launcher=slurm (root; apt-get install slurm-wlm
# munge). ARGS=stop stops it. Client commands find it through /etc/slurm/slurm.conf, or through the
# SLURM_CONF it prints when another slurm.conf is there.
local-slurm: ## start a one-node Slurm cluster here (root); ARGS=stop stops it
	scripts/local-slurm $(ARGS)

# Learning-rate tuning, the DeepOBS protocol: per framework x method an Optuna study (seeded TPE)
# on a validation split carved from the training set, then the best and the default lr re-run
# with SEEDS seeds; the report's "Tuned vs default" table compares their test accuracy.
TRIALS  ?= 20
SEEDS   ?= 5
VAL     ?= 1000
tune: $(STAMP) ## learning-rate tuning per framework x method, then best vs default with SEEDS seeds
	for fw in $(subst $(comma), ,$(FRAMEWORKS)); do for m in $(TUTORIAL) $(BEYOND); do \
	    common="framework=$$fw optimizer=$$m data.val_size=$(VAL) profile=$(PROFILE) device=$(DEVICE) data=$(DATA) results_dir=$(RESULTS) $(ARGS)"; \
	    $(PYTHON) -m bench -m hydra/sweeper=tune_lr hydra.sweeper.n_trials=$(TRIALS) $$common || exit 1; \
	    lrs=$$($(PYTHON) -m bench.tuning lrs results_dir=$(RESULTS) framework=$$fw optimizer=$$m) || exit 1; \
	    $(PYTHON) -m bench -m optimizer.lr=$$lrs seeds=$(SEEDS) $$common || exit 1; \
	done; done
	$(PYTHON) -m bench.report results_dir=$(RESULTS)

clean: ## remove everything make bench wrote under results/
	rm -rf $(RESULTS)/runs $(RESULTS)/report $(RESULTS)/.hydra $(RESULTS)/timing $(RESULTS)/parity $(RESULTS)/toy \
		$(RESULTS)/scaling \
		$(RESULTS)/.gpu-slots

# framework.version=<release> builds a venv per framework, version and device (bench/envs.py) under
# $OPTBENCH_ENVS, else .envs/. Only those venvs (<framework>-<version>-<cpu|cuda>), unfinished builds
# and the locks go, so a cache folder set to a shared path loses nothing else.
clean-envs: ## remove the venvs of other framework versions (.envs/, or $OPTBENCH_ENVS)
	d="$${OPTBENCH_ENVS:-.envs}"; rm -rf "$$d"/*-cpu "$$d"/*-cuda "$$d"/.tmp-* "$$d"/.locks; rmdir "$$d" 2>/dev/null || true
