"""Which models `sai up --only` loads (sai/local/model_deps.py, the Triton command line) and the
GPU variant of the local configs (sai/bench/gpu.py), from the real stack.yml and model configs."""

from __future__ import annotations

import pathlib

import pytest
from helpers import ROOT

from sai.bench.gpu import MODELS, gpu_config
from sai.local.model_deps import needed_models
from sai.local.stack import Function, load_stack
from sai.local.triton_server import TritonDist, TritonServer
from sai.models.config import read_config

REPO = ROOT / "model_repository"
STACK = load_stack(ROOT / "stack.yml")


@pytest.mark.parametrize(
    ("functions", "models"),
    [
        (["image-classify"], ["image_classifier"]),
        (["object-classify"], ["image_classifier"]),
        (["text-embed"], ["text_encoder"]),
        (["text-keywords", "text-embed"], ["text_encoder"]),
        (["text-sentiment"], ["sentiment_head", "text_encoder", "text_sentiment"]),  # an ensemble brings its steps
        (["text-entities"], ["entity_head", "text_encoder", "text_entities"]),
        (list(STACK.functions), sorted(p.name for p in REPO.iterdir() if (p / "config.pbtxt").is_file())),
    ],
)
def test_functions_need_the_models_they_name(functions, models):
    assert needed_models([STACK.functions[f] for f in functions], REPO) == models


def test_a_function_that_names_no_model_loads_them_all():
    blank = Function(**{**vars(STACK.functions["text-embed"]), "name": "blank", "environment": {"max_inflight": "8"}})
    assert needed_models([STACK.functions["image-classify"], blank], REPO) is None


def test_triton_loads_only_the_named_models(tmp_path):
    dist = TritonDist(root=tmp_path, libs=tmp_path)
    only = TritonServer(REPO, tmp_path, models=["image_classifier"]).command(dist, tmp_path)
    assert "--model-control-mode=explicit" in only
    assert [a for a in only if a.startswith("--load-model")] == ["--load-model=image_classifier"]
    every = TritonServer(REPO, tmp_path, model_control=True).command(dist, tmp_path)
    assert [a for a in every if a.startswith("--load-model")] == ["--load-model=*"]
    plain = TritonServer(REPO, tmp_path).command(dist, tmp_path)
    assert not [a for a in plain if a.startswith(("--load-model", "--model-control-mode"))]


@pytest.mark.parametrize("model", MODELS)
def test_gpu_variant_puts_the_model_on_the_gpu_with_cuda(model, tmp_path):
    local = (REPO / model / "configs" / "local.pbtxt").read_text()
    path = pathlib.Path(tmp_path / "local_gpu.pbtxt")
    path.write_text(gpu_config(local))
    gpu, cpu = read_config(path), read_config(REPO / model / "configs" / "local.pbtxt")
    assert gpu["instance_group"] == [{"kind": "KIND_GPU", "count": 1}]
    assert gpu["parameters"]["execution_provider"] == {"string_value": "cuda"}
    assert int(gpu["dynamic_batching"]["max_queue_delay_microseconds"]) > 0
    assert "intra_op_threads" not in gpu["parameters"]
    # Everything the functions read is unchanged: tensors, batch size, backend, preprocessing.
    for key in ("name", "backend", "max_batch_size", "input", "output"):
        assert gpu[key] == cpu[key], key
    assert {k: v for k, v in gpu["parameters"].items() if k in cpu["parameters"]} == {
        k: v for k, v in cpu["parameters"].items() if k not in ("intra_op_threads", "allow_spinning")
    }
