"""Bring your own model, end to end: on a running platform (the shipped image-classify), a second
classifier with other tensor names, float32 NCHW input and no softmax in the graph
(sai/models/fp32_example.py) is added with `sai models add` (loaded into a real Triton and run on
zeros), a function is scaffolded for it with `sai new`, and a reload loads and starts them while
image-classify keeps answering. The new function gives the same top-1 as onnxruntime in-process on
real photos; a broken config is reported by the reload and breaks nothing."""

from __future__ import annotations

import os
import shutil
import threading
import time

import numpy as np
import pytest
import requests
from helpers import ROOT, encode, project_copy, running_platform
from PIL import Image

from sai.cli import main
from sai.cli.reload import describe
from sai.models.fp32_example import MEAN, STD, float_nchw_logits

pytestmark = pytest.mark.slow
MODEL, FUNCTION = "effnet_fp32", "effnet-classify"
PHOTOS = ("chelsea", "coffee", "astronaut")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project with image-classify and image_classifier only, where the CLI adds the
    model and scaffolds the function (SAI_REPO points `sai new` there)."""
    root = project_copy(tmp_path_factory.mktemp("byo-project"))
    (root / "tests").mkdir()
    return root


@pytest.fixture(scope="module")
def onnx_file(project):
    return float_nchw_logits(project / "effnet_fp32.onnx")


@pytest.fixture(scope="module")
def platform(project, tmp_path_factory):
    """The platform as a user has it before: the shipped image-classify on image_classifier."""
    with running_platform(
        tmp_path_factory.mktemp("byo-state"),
        stack_file=project / "stack.yml",
        model_repository=project / "model_repository",
        only=["image-classify"],
    ) as running:
        yield running


class Traffic:
    """Calls image-classify in a loop (in a thread) while the platform is changed around it."""

    def __init__(self, gateway: str, body: bytes):
        self.statuses: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, args=(gateway, body), daemon=True)
        self.thread.start()

    def run(self, gateway, body):
        while not self.stop.is_set():
            r = requests.post(f"{gateway}/function/image-classify", data=body, headers={"Content-Type": "image/jpeg"}, timeout=60)
            self.statuses.append(r.status_code)
            time.sleep(0.1)

    def finish(self) -> list[int]:
        self.stop.set()
        self.thread.join(60)
        return self.statuses


def scaffold(project, function: str, model: str) -> None:
    """`sai new FUNCTION --from image-classify --model MODEL` in the project copy (SAI_REPO)."""
    old = os.environ.get("SAI_REPO")
    os.environ["SAI_REPO"] = str(project)
    try:
        assert main(["new", function, "--from", "image-classify", "--model", model]) == 0
    finally:
        os.environ.pop("SAI_REPO") if old is None else os.environ.__setitem__("SAI_REPO", old)


@pytest.fixture(scope="module")
def added(platform, project, onnx_file, coffee_jpeg):
    """The three commands of the README: models add, new, reload (here: the supervisor's reload,
    which `sai reload` triggers), with image-classify called throughout."""
    traffic = Traffic(platform.gateway_url, coffee_jpeg)
    labels = ROOT / "model_repository" / "image_classifier" / "labels.txt"
    argv = [
        "models",
        "add",
        MODEL,
        "--onnx",
        str(onnx_file),
        "--labels",
        str(labels),
        "--repo",
        str(project / "model_repository"),
    ]
    assert main([*argv, "--image-mean", MEAN, "--image-std", STD, "--resize-short-side", "256"]) == 0
    scaffold(project, FUNCTION, MODEL)
    report = platform.reload()
    return project, report, traffic.finish()


@pytest.fixture(scope="module")
def gateway(added, platform):
    return platform.gateway_url


def test_reload_loaded_the_model_and_started_the_function_while_the_other_kept_serving(added):
    _, report, statuses = added
    assert describe(report) == [f"model {MODEL}: loaded", f"function {FUNCTION}: started"]
    assert statuses and set(statuses) == {200}, statuses


def reference_top1(onnx_file, photo: np.ndarray) -> int:
    """onnxruntime in-process, preprocessed here independently: short side 256 (bicubic), centre 224."""
    import onnxruntime as ort

    img = Image.fromarray(photo).convert("RGB")
    scale = 256 / min(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
    left, top = (img.width - 224) // 2, (img.height - 224) // 2
    x = np.asarray(img.crop((left, top, left + 224, top + 224)), np.float32) / 255.0
    x = ((x - 0.498) / 0.502).transpose(2, 0, 1)[np.newaxis]
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    return int(session.run(["scores"], {"pixel_values": x})[0][0].argmax())


def test_added_model_files_and_scaffold(added):
    project = added[0]
    model = project / "model_repository" / MODEL
    assert sorted(p.relative_to(model).as_posix() for p in model.rglob("*") if p.is_file()) == [
        "1/model.onnx",
        "config.pbtxt",
        "configs/cpu.pbtxt",
        "configs/local.pbtxt",
        "labels.txt",
    ]
    assert (project / "functions" / FUNCTION / "handler.py").is_file()
    assert (project / "tests" / "test_fn_effnet_classify.py").is_file()


@pytest.mark.parametrize("photo", PHOTOS)
def test_top1_equals_onnxruntime_in_process(gateway, onnx_file, photo):
    from skimage import data

    pixels = getattr(data, photo)()
    r = requests.post(
        f"{gateway}/function/{FUNCTION}", data=encode(pixels, quality=95), headers={"Content-Type": "image/jpeg"}, timeout=60
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == MODEL
    top = body["predictions"][0]
    # JPEG-encoding is the only difference: the reference sees the decoded JPEG too.
    from io import BytesIO

    decoded = np.asarray(Image.open(BytesIO(encode(pixels, quality=95))))
    assert top["class_id"] == reference_top1(onnx_file, decoded)
    # Logits turned into probabilities by the function (apply_softmax): ranked, in (0, 1].
    scores = [p["score"] for p in body["predictions"]]
    assert 0 < scores[-1] <= scores[0] <= 1 and sum(scores) <= 1.0 + 1e-6


def test_the_shipped_function_still_serves(gateway, coffee_jpeg):
    r = requests.post(f"{gateway}/function/image-classify", data=coffee_jpeg, headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "espresso"


def test_adding_the_same_name_again_is_refused(added, onnx_file, capsys):
    code = main(["models", "add", MODEL, "--onnx", str(onnx_file), "--repo", str(added[0] / "model_repository")])
    assert code == 2 and f"model '{MODEL}' already exists" in capsys.readouterr().err


def test_reload_restarts_a_changed_function_and_reports_nothing_else(added, platform, coffee_jpeg):
    project = added[0]
    assert describe(platform.reload()) == ["nothing changed"]
    handler = project / "functions" / FUNCTION / "handler.py"
    handler.write_text(handler.read_text() + "\n# changed\n")
    assert describe(platform.reload()) == [f"function {FUNCTION}: restarted"]
    r = requests.post(
        f"{platform.gateway_url}/function/{FUNCTION}", data=coffee_jpeg, headers={"Content-Type": "image/jpeg"}, timeout=60
    )
    assert r.status_code == 200 and r.json()["model"] == MODEL


# A config Triton refuses, one it loads (the Python backend does not check input names at load
# time) but that cannot run, and one too big to check: each is reported, none is left loaded, the
# rest serves.
BROKEN = {
    "refused": 'name: "refused"\nbackend: "onnx_local"\ninput [ { name: "x" } ]\n',
    "wrong_input": (
        'name: "wrong_input"\nbackend: "onnx_local"\nmax_batch_size: 16\n'
        'input [ { name: "nope", data_type: TYPE_FP32, dims: [ 3, 224, 224 ] } ]\n'
        'output [ { name: "scores", data_type: TYPE_FP32, dims: [ 1000 ] } ]\n'
    ),
    # Loads, but its check on zeros would need 112 GiB: refused before allocating (not a MemoryError).
    "too_big": (
        'name: "too_big"\nbackend: "onnx_local"\nmax_batch_size: 16\n'
        'input [ { name: "pixel_values", data_type: TYPE_FP32, dims: [ 3, 100000, 100000 ] } ]\n'
        'output [ { name: "scores", data_type: TYPE_FP32, dims: [ 1000 ] } ]\n'
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_reload_with_a_broken_config_reports_it_and_keeps_serving(added, platform, coffee_jpeg, name):
    broken = added[0] / "model_repository" / name
    shutil.copytree(added[0] / "model_repository" / MODEL, broken)
    (broken / "configs" / "local.pbtxt").write_text(BROKEN[name])
    try:
        report = platform.reload()
        assert list(report["models"]["failed"]) == [name] and report["models"]["failed"][name]
        assert describe(report)[0].startswith(f"model {name}: FAILED: ")
        ready = requests.get(f"http://{platform.triton_url}/v2/models/{name}/ready", timeout=10)
        assert ready.status_code != 200
        for fn in ("image-classify", FUNCTION):
            r = requests.post(
                f"{platform.gateway_url}/function/{fn}", data=coffee_jpeg, headers={"Content-Type": "image/jpeg"}, timeout=60
            )
            assert r.status_code == 200, (fn, r.text)
    finally:
        shutil.rmtree(broken)


def _fp16_classifier(path) -> None:
    """A small classifier whose input is FP16 NCHW (pixels -> channel means -> 10 scores)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.arange(30, dtype=np.float32).reshape(3, 10) / 30, "w")
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["pixels"], ["as_float"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", ["as_float"], ["means"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["means", "w"], ["scores"]),
        ],
        "fp16_classifier",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT16, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 10])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


def test_a_model_the_function_cannot_feed_gets_a_clear_500(added, platform, coffee_jpeg, tmp_path):
    """image-classify scaffolded for a model with an FP16 input: its config is checked when first
    read, and the call gets 500 unsupported_model naming the dtype (it was a bare KeyError)."""
    project = added[0]
    _fp16_classifier(tmp_path / "fp16.onnx")
    repo = str(project / "model_repository")
    assert main(["models", "add", "fp16_classifier", "--onnx", str(tmp_path / "fp16.onnx"), "--repo", repo]) == 0
    scaffold(project, "fp16-classify", "fp16_classifier")
    assert describe(platform.reload()) == ["model fp16_classifier: loaded", "function fp16-classify: started"]
    r = requests.post(
        f"{platform.gateway_url}/function/fp16-classify", data=coffee_jpeg, headers={"Content-Type": "image/jpeg"}, timeout=60
    )
    assert r.status_code == 500, r.text
    error = r.json()["error"]
    assert error["code"] == "unsupported_model"
    assert "input 'pixels' is TYPE_FP16; the function sends TYPE_UINT8 or TYPE_FP32" in error["message"]
