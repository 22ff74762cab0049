"""The GPU variant of the local Triton configs, for sai/bench/gpu.sh (not run on a GPU yet).

`configs/local_gpu.pbtxt` = `configs/local.pbtxt` with the model's instances on the GPU
(`KIND_GPU`, one per card), onnxruntime's CUDA execution provider in the `onnx_local` backend,
and a short dynamic-batching window so that concurrent requests share a GPU batch.

Run: python -m sai.bench.gpu [MODEL ...]   (default: image_classifier text_encoder)
"""

from __future__ import annotations

import re
import sys

from sai import paths

CONFIG_NAME = "local_gpu"
MODELS = ("image_classifier", "text_encoder")
QUEUE_DELAY_US = 200  # a GPU batch of 8 costs about what one image does: wait a little for company


def gpu_config(local: str) -> str:
    """configs/local.pbtxt text -> the GPU variant's text."""
    out, n = re.subn(r"instance_group\s*\[[^\]]*\]", "instance_group [ { kind: KIND_GPU, count: 1 } ]", local)
    if n != 1:
        raise ValueError("expected one instance_group in the local config")
    out = re.sub(r"max_queue_delay_microseconds:\s*\d+", f"max_queue_delay_microseconds: {QUEUE_DELAY_US}", out)
    out = re.sub(r'parameters \{ key: "(intra_op_threads|allow_spinning)".*\n', "", out)
    header = "# GPU variant of configs/local.pbtxt, written by `python -m sai.bench.gpu`; see sai/bench/gpu.sh.\n"
    return header + out + 'parameters { key: "execution_provider", value: { string_value: "cuda" } }\n'


def main(argv: list[str]) -> int:
    for name in argv or MODELS:
        folder = paths.model_repository() / name / "configs"
        target = folder / f"{CONFIG_NAME}.pbtxt"
        target.write_text(gpu_config((folder / "local.pbtxt").read_text()))
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
