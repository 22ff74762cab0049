"""`sai models add` against hostile and careless model files, as a user runs it (a subprocess,
a real Triton for the ones that load): what a second probe of the platform found
(docs/reliability.md, 6, 11 and 12). Refusals are exit 2 and one line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from sai.models.config import read_config

pytestmark = pytest.mark.slow


def sai_add(name, onnx_file, repo, timeout=180):
    return subprocess.run(
        [sys.executable, "-m", "sai", "models", "add", name, "--onnx", str(onnx_file), "--repo", str(repo)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def save(path, nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    with open(path, "wb") as f:  # as written: onnx.save would resolve external data
        f.write(model.SerializeToString())
    return path


def matmul(path, external=None, x_name="x", y_name="y", x_dims=("N", 4)):
    """y = x @ w, w 4x4 inline or, with `external`, in an external data file at that location."""
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    if external is not None:
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        for key, value in (("location", external), ("offset", "0"), ("length", "64")):
            entry = w.external_data.add()
            entry.key, entry.value = key, value
    x = helper.make_tensor_value_info(x_name, TensorProto.FLOAT, list(x_dims))
    y = helper.make_tensor_value_info(y_name, TensorProto.FLOAT, ["N", 4])
    return save(path, [helper.make_node("MatMul", [x_name, "w"], [y_name])], [x], [y], [w])


def assert_refused(run, *phrases):
    assert run.returncode == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sai: error: ") and "Traceback" not in run.stderr, run.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


@pytest.mark.parametrize("where", ["/etc/passwd", "../../../../etc/passwd", "link.bin"])
def test_external_data_is_never_followed(tmp_path, where):
    """Item 12: external data at /etc/passwd, ../ or a symlink gave a traceback and exit 1."""
    (tmp_path / "link.bin").symlink_to("/etc/passwd")
    run = sai_add("hostile", matmul(tmp_path / "m.onnx", external=where), tmp_path / "repo")
    assert_refused(run, "external data", "save it as one file")
    assert not (tmp_path / "repo" / "hostile").exists()


def test_an_absurd_input_is_refused_before_anything_is_allocated(tmp_path):
    """Item 12: dims [3, 100000, 100000] (112 GiB an item) are refused from the graph alone."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 100000, 100000])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    axes = numpy_helper.from_array(np.array([2, 3], np.int64), "axes")
    model = save(tmp_path / "huge.onnx", [helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0)], [x], [y], [axes])
    run = sai_add("huge", model, tmp_path / "repo", timeout=60)
    assert_refused(run, "111.8 GiB per item", "smaller dimensions")


def test_a_call_that_allocates_a_lot_is_warned_about(tmp_path):
    """Item 11: an input of 4 bytes expanded to 128 MiB inside the graph: 2 GiB at the local
    max_batch_size of 16. Added (it runs), with a warning that says how much and what to do."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])
    consts = [
        numpy_helper.from_array(np.array([1, 4096, 8192], np.int64), "shape"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "axes"),
        numpy_helper.from_array(np.array([-1, 1], np.int64), "column"),
    ]
    nodes = [
        helper.make_node("Expand", ["x", "shape"], ["big"]),
        helper.make_node("ReduceSum", ["big", "axes"], ["total"], keepdims=0),
        helper.make_node("Reshape", ["total", "column"], ["y"]),
    ]
    run = sai_add("wide", save(tmp_path / "wide.onnx", nodes, [x], [y], consts), tmp_path / "repo")
    assert run.returncode == 0, run.stderr
    assert "sai: warning: one call of 16 item(s) may hold up to 2.0 GiB of tensors" in run.stderr
    assert "max_batch_size" in run.stderr and "Traceback" not in run.stderr
    # a model of ordinary size says nothing
    run = sai_add("small", matmul(tmp_path / "small.onnx"), tmp_path / "repo")
    assert run.returncode == 0 and "warning" not in run.stderr, run.stderr


def test_tensor_names_cannot_inject_config(tmp_path):
    """Item 6: names from the graph went into config.pbtxt unescaped, so an output name could add
    a label file (read from anywhere) and an input name an instance group. Written through
    Triton's ModelConfig message, they stay names: the model loads and runs under them."""
    x_name = 'x" dims: [ 4 ] }\ninstance_group [ { kind: KIND_CPU, count: 64 } ]\ninput [ { name: "x'
    y_name = 'y", label_filename: "../../../../etc/passwd'
    run = sai_add("named", matmul(tmp_path / "m.onnx", x_name=x_name, y_name=y_name), tmp_path / "repo")
    assert run.returncode == 0, run.stdout + run.stderr
    target = tmp_path / "repo" / "named"
    for path in (target / "config.pbtxt", target / "configs" / "cpu.pbtxt", target / "configs" / "local.pbtxt"):
        config = read_config(path)
        assert [i["name"] for i in config["input"]] == [x_name] and [o["name"] for o in config["output"]] == [y_name]
        assert "label_filename" not in config["output"][0]
        assert len(config["instance_group"]) == 1 and config["instance_group"][0]["count"] in (1, 2)
    assert f"{y_name} [1, 4]" in run.stdout  # the zeros check ran under the names as the graph has them


def strings_model(path, reshape_to):
    """text (STRING [N, 1]) reshaped to `reshape_to` (STRING)."""
    x = helper.make_tensor_value_info("text", TensorProto.STRING, ["N", 1])
    y = helper.make_tensor_value_info("words", TensorProto.STRING, ["N", reshape_to[-1]])
    shape = numpy_helper.from_array(np.array(reshape_to, np.int64), "shape")
    return save(path, [helper.make_node("Reshape", ["text", "shape"], ["words"])], [x], [y], [shape])


def test_string_inputs_are_run_on_zeros_too(tmp_path):
    """Item 6: the check on zeros was skipped for string inputs, so a string model that fails on
    its first request was added. Strings get "0" now, like any other type gets its zero."""
    run = sai_add("fails", strings_model(tmp_path / "bad.onnx", [-1, 3]), tmp_path / "repo")
    assert_refused(run, "fails", "inference on zeros failed")
    assert not (tmp_path / "repo" / "fails").exists()
    run = sai_add("works", strings_model(tmp_path / "good.onnx", [-1, 1]), tmp_path / "repo")
    assert run.returncode == 0 and "words [1, 1]" in run.stdout, run.stdout + run.stderr
    assert os.path.isfile(tmp_path / "repo" / "works" / "configs" / "local.pbtxt")
