"""The model repository: every config parses as a Triton ModelConfig, the three configs of a
model agree on the interface, and the built image model was verified against PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sai import paths
from sai.models.config import read_config as parse

REPO = paths.model_repository()
MODELS = sorted(p.name for p in REPO.iterdir() if (p / "config.pbtxt").is_file())


def interface(config: dict) -> tuple:
    strip = lambda ts: [(t["name"], t["data_type"], t.get("dims")) for t in ts]  # noqa: E731
    return strip(config.get("input", [])), strip(config.get("output", []))


def test_expected_models_are_there():
    assert {"image_classifier", "text_encoder", "sentiment_head", "text_sentiment"} <= set(MODELS)


@pytest.mark.parametrize("model", MODELS)
def test_configs_parse_and_agree(model):
    gpu = parse(REPO / model / "config.pbtxt")
    assert gpu["name"] == model
    variants = {p.stem: parse(p) for p in (REPO / model / "configs").glob("*.pbtxt")}
    assert {"cpu", "local"} <= set(variants), f"{model} needs configs/cpu.pbtxt and configs/local.pbtxt"
    for name, cfg in variants.items():
        assert cfg["name"] == model, name
        assert interface(cfg) == interface(gpu), f"{model}: configs/{name}.pbtxt differs from config.pbtxt"
    if gpu.get("platform") != "ensemble":
        assert gpu["platform"] == "onnxruntime_onnx"
        assert {g["kind"] for g in gpu["instance_group"]} == {"KIND_GPU"}
        assert {g["kind"] for g in variants["cpu"]["instance_group"]} == {"KIND_CPU"}
        assert variants["cpu"]["platform"] == "onnxruntime_onnx"
        assert variants["local"]["backend"] == "onnx_local"
        assert "dynamic_batching" in gpu


def test_image_model_build_was_verified_against_pytorch():
    report = json.loads((REPO / "image_classifier" / "1" / "build_report.json").read_text())
    assert report["max_abs_logit_diff"] < 1e-3
    labels = (REPO / "image_classifier" / "labels.txt").read_text().splitlines()
    assert len(labels) == 1000 and labels[967] == "espresso"


def test_function_requirements_are_installed():
    """What each function's requirements.txt asks the container for is what the platform runs with."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    for req_file in (paths.repo_root() / "functions").glob("*/requirements.txt"):
        for line in req_file.read_text().splitlines():
            line = line.split("#")[0].strip()
            if not line:
                continue
            req = Requirement(line)
            try:
                installed = version(req.name)
            except PackageNotFoundError:
                pytest.fail(f"{req_file.parent.name}: {req.name} is not installed")
            assert req.specifier.contains(installed, prereleases=True), f"{req_file.parent.name}: {req} vs {installed}"


def test_configs_parse_beside_the_kserve_sdk():
    """`sai cluster` imports the kserve SDK, whose v2 protocol protos reuse the names of Triton's
    gRPC protos; the config reader must not load those (protobuf refuses a duplicate symbol)."""
    code = (
        "import kserve; from sai.models.config import read_config; "
        "print(read_config('model_repository/image_classifier/config.pbtxt')['name'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=paths.repo_root(), check=True)
    assert out.stdout.strip() == "image_classifier"
