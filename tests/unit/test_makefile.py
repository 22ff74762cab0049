"""The set-up's documented switch: `TORCH_INDEX` gives pip PyTorch's CPU wheel index, and without
it the install is what CI runs (checked with `make -n`, which prints the commands without running)."""

from __future__ import annotations

import subprocess

from helpers import ROOT


def _setup_commands(*variables: str) -> list[str]:
    out = subprocess.run(
        ["make", "-n", "-B", "setup", *variables], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return [line for line in out.splitlines() if "pip install" in line and ".[models,dev,cluster]" in line]


def test_torch_index_reaches_pip_only_when_given():
    (plain,) = _setup_commands()
    assert "--extra-index-url" not in plain
    (cpu,) = _setup_commands("TORCH_INDEX=https://download.pytorch.org/whl/cpu")
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in cpu
