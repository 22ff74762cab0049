#!/usr/bin/env bash
# The GPU run: image-classify and text-embed through the local platform with Triton's model
# instances on the GPU (onnxruntime CUDA provider inside the onnx_local backend), against
# in-process onnxruntime-CUDA on the same card, at concurrency 1 to 64.
#
# Not run on a GPU yet. Needs: an NVIDIA driver for CUDA 12, `make setup` and `make models` done.
# What it installs: onnxruntime-gpu with the CUDA 12 / cuDNN 9 wheels (its [cuda,cudnn] extras) and
# numpy<2, into .venv/triton-stub-packages-gpu (the Triton stub's packages, see
# sai/local/triton_server.py) and into .venv (the in-process side). It writes
# model_repository/{image_classifier,text_encoder}/configs/local_gpu.pbtxt (python -m sai.bench.gpu).
# Output: the card's name, then `sai bench image` and `sai bench text` tables. Takes ~10 min.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
STUB=.venv/triton-stub-packages-gpu
LEVELS=${LEVELS:-1,4,16,64}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
$PY -m pip install -q --target "$STUB" 'numpy<2' 'onnxruntime-gpu[cuda,cudnn]'
$PY -m pip uninstall -q -y onnxruntime || true  # one onnxruntime in .venv: the GPU build provides the CPU provider too
$PY -m pip install -q 'onnxruntime-gpu[cuda,cudnn]'
$PY -m sai.bench.gpu image_classifier text_encoder

export SAI_TRITON_CONFIG=local_gpu SAI_STUB_PACKAGES="$PWD/$STUB"
$PY -m sai bench image --concurrency "$LEVELS" --requests 400
$PY -m sai bench text --functions text-embed --batch 1,16 --concurrency "$LEVELS" --sentences 1600
