"""The NVIDIA driver the GPU operator installs must run the CUDA that the pinned Triton image is
built on. Neither can run here, so the numbers are read from upstream files at the pinned tags
(each row names its file) and the pins in k8s/bootstrap.sh, the chart and the docs must agree."""

from __future__ import annotations

import re

import yaml

from sai.k8s.helm_kubectl import CHART_DIR, REPO_ROOT

# Triton image tag -> (Triton release, CUDA, driver it was built and tested against), from
# triton-inference-server/server at the release tag:
#   build.py DEFAULT_TRITON_VERSION_MAP: release_version 2.61.0 <-> triton_container_version 25.09;
#   docs/introduction/compatibility.md, the 25.09 rows of the containers built on the same 25.09
#   base (vllm-python-py3: CUDA 13.0.1.012, driver 580.82.07); build.py copies CUDA 13 libraries
#   (libcudart.so.13, libcublas.so.13) from that base.
TRITON = {
    "25.09-py3": ("2.61.0", "13.0.1", "580.82.07", "server v2.61.0 build.py + docs/introduction/compatibility.md"),
}
# CUDA major.minor -> lowest driver branch that runs it without the data-center forward-compatibility
# package: CUDA 13.0 ships with the R580 driver (the 580.82.07 above).
MIN_DRIVER_BRANCH = {"13.0": 580}
# GPU operator chart version -> its default driver, NVIDIA/gpu-operator at the tag,
# deployments/gpu-operator/values.yaml `driver.version`.
GPU_OPERATOR_DRIVER = {
    "v25.3.0": "570.124.06",  # the former pin: too old for CUDA 13
    "v25.3.4": "580.82.07",
    "v25.10.0": "580.95.05",
    "v25.10.1": "580.105.08",
    "v26.3.3": "580.126.20",
}


def bootstrap_pin(name: str) -> str:
    text = (REPO_ROOT / "k8s/bootstrap.sh").read_text()
    return re.search(rf'^{name}="([^"]+)"', text, re.MULTILINE).group(1)


def branch(driver: str) -> int:
    return int(driver.split(".")[0])


def test_the_operators_driver_runs_tritons_cuda():
    tag = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["triton"]["image"]["tag"]
    assert tag in TRITON, f"Triton {tag}: add its CUDA and driver to TRITON, from its server release's files"
    _, cuda, built_with, _ = TRITON[tag]
    need = MIN_DRIVER_BRANCH[".".join(cuda.split(".")[:2])]
    assert branch(built_with) >= need
    operator = bootstrap_pin("GPU_OPERATOR_VERSION")
    assert operator in GPU_OPERATOR_DRIVER, f"gpu-operator {operator}: add its values.yaml driver.version"
    driver = GPU_OPERATOR_DRIVER[operator]
    assert branch(driver) >= need, f"gpu-operator {operator} installs driver {driver}; Triton {tag} needs >= {need}"
    assert branch(GPU_OPERATOR_DRIVER["v25.3.0"]) < need, "the table shows why the former pin failed"
    assert bootstrap_pin("TRITON_IMAGE").endswith(f":{tag}")


def test_docs_state_the_minimum_driver_and_the_pins():
    operator = bootstrap_pin("GPU_OPERATOR_VERSION")
    tag = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["triton"]["image"]["tag"]
    release, cuda, _, _ = TRITON[tag]
    need = MIN_DRIVER_BRANCH[".".join(cuda.split(".")[:2])]
    docs = (REPO_ROOT / "docs/kubernetes.md").read_text()
    assert f"NVIDIA GPU operator {operator}" in docs
    assert f"driver {GPU_OPERATOR_DRIVER[operator]}" in docs
    assert f"NVIDIA driver ≥ {need}" in docs
    assert f"CUDA {'.'.join(cuda.split('.')[:2])}" in docs and f"Triton {release}" in docs
    assert "--gpu-operator" in docs
    help_text = (REPO_ROOT / "k8s/bootstrap.sh").read_text()
    assert f"default driver {GPU_OPERATOR_DRIVER[operator]}" in help_text
