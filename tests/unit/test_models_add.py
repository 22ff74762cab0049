"""`sai models add` and `sai new` without a Triton: graph inspection, the configs written, and the
clean refusals (not ONNX, truncated, newer opset, dynamic dims, duplicate/invalid names, unknown
models). The end-to-end path (a real Triton, the gateway) is tests/test_byo_model.py."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from sai import paths
from sai.cli import main
from sai.models import add
from sai.models.config import read_config
from sai.scaffold import new_function


def tiny_classifier(path, layout="NCHW", dtype=TensorProto.FLOAT, opset=18, dims=None, softmax=False):
    """A 4-class 'classifier': global average pool + a 3x4 matrix."""
    shape = dims or (["N", 3, 8, 8] if layout == "NCHW" else ["N", 8, 8, 3])
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    x = helper.make_tensor_value_info("img", dtype, shape)
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 4], np.arange(12, dtype=np.float32).tolist())
    nodes = [helper.make_node("Cast", ["img"], ["f"], to=TensorProto.FLOAT)]
    nodes.append(helper.make_node("ReduceMean", ["f", "axes"], ["m"], keepdims=0))
    nodes.append(helper.make_node("MatMul", ["m", "w"], ["logits" if softmax else "out"]))
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["out"], axis=1))
    axes_t = helper.make_tensor("axes", TensorProto.INT64, [2], axes)
    graph = helper.make_graph(nodes, "tiny", [x], [y], [w, axes_t])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_float_nchw_logits(tmp_path):
    graph = add.inspect(add.load_graph(tiny_classifier(tmp_path / "m.onnx")))
    assert graph.batched and graph.opset == 18
    assert [(t.name, t.dtype, t.dims) for t in graph.inputs] == [("img", "TYPE_FP32", [3, 8, 8])]
    assert [(t.name, t.dtype, t.dims) for t in graph.outputs] == [("out", "TYPE_FP32", [4])]
    params = add.parameters(graph, add.ImageOptions(mean=[0.5] * 3, std=[0.25] * 3, resize_short_side=9))
    assert params == {
        "resize_short_side": "9",
        "resize_filter": "bicubic",
        "mean": "0.5,0.5,0.5",
        "std": "0.25,0.25,0.25",
        "apply_softmax": "true",
    }


def test_uint8_nhwc_with_softmax_needs_no_normalisation(tmp_path):
    graph = add.inspect(add.load_graph(tiny_classifier(tmp_path / "m.onnx", "NHWC", TensorProto.UINT8, softmax=True)))
    assert graph.inputs[0].dims == [8, 8, 3] and graph.inputs[0].dtype == "TYPE_UINT8"
    assert add.parameters(graph, add.ImageOptions()) == {"resize_short_side": "8", "resize_filter": "bicubic"}
    with pytest.raises(add.AddError, match="float32 inputs"):
        add.parameters(graph, add.ImageOptions(mean=[0.5] * 3))


def test_written_configs_parse_and_agree(tmp_path):
    onnx_file = tiny_classifier(tmp_path / "m.onnx")
    (tmp_path / "labels").write_text("a\nb\nc\nd\n")
    graph = add.inspect(add.load_graph(onnx_file))
    target = tmp_path / "tiny"
    add.write_model(target, "tiny", onnx_file, graph, add.ImageOptions(labels=tmp_path / "labels"))
    gpu, cpu, local = (
        read_config(p) for p in (target / "config.pbtxt", target / "configs/cpu.pbtxt", target / "configs/local.pbtxt")
    )
    assert gpu["platform"] == cpu["platform"] == "onnxruntime_onnx" and local["backend"] == "onnx_local"
    assert (gpu["max_batch_size"], cpu["max_batch_size"], local["max_batch_size"]) == (32, 16, 16)
    assert gpu["instance_group"][0]["kind"] == "KIND_GPU" and local["instance_group"][0]["kind"] == "KIND_CPU"
    for cfg in (gpu, cpu, local):
        assert cfg["input"] == gpu["input"] and cfg["output"] == gpu["output"]
        assert cfg["output"][0]["label_filename"] == "labels.txt"
        assert cfg["parameters"]["apply_softmax"]["string_value"] == "true"
    assert gpu["model_warmup"][0]["batch_size"] == 8
    assert (target / "1" / "model.onnx").read_bytes() == onnx_file.read_bytes()


def test_a_fixed_batch_of_1_is_served_with_max_batch_size_1(tmp_path):
    onnx_file = tiny_classifier(tmp_path / "m.onnx", dims=[1, 3, 8, 8])
    model = onnx.load(str(onnx_file))
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(model, str(onnx_file))
    graph = add.inspect(add.load_graph(onnx_file))
    assert graph.batched and graph.fixed_batch_1 and graph.inputs[0].dims == [3, 8, 8]
    add.write_model(tmp_path / "fixed", "fixed", onnx_file, graph, add.ImageOptions())
    for path in (tmp_path / "fixed" / "config.pbtxt", tmp_path / "fixed" / "configs" / "local.pbtxt"):
        cfg = read_config(path)
        assert cfg["max_batch_size"] == 1 and "dynamic_batching" not in cfg


def test_image_size_pins_variable_height_and_width(tmp_path):
    model = add.load_graph(tiny_classifier(tmp_path / "m.onnx", dims=["N", 3, "H", "W"]))
    with pytest.raises(add.AddError, match="dynamic dimensions other than the batch.*--image-size"):
        add.inspect(model)
    assert add.inspect(model, add.ImageOptions(size=32)).inputs[0].dims == [3, 32, 32]


@pytest.mark.parametrize(
    "content,message",
    [
        (b"this is not a model\n" * 10, "is not an ONNX model"),
        (None, "is not an ONNX model|not a valid ONNX model"),  # truncated: the first half of a real file
    ],
)
def test_refuses_non_onnx_and_truncated_files(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.onnx"
    if content is None:
        data = tiny_classifier(tmp_path / "m.onnx").read_bytes()
        content = data[: len(data) // 2]
    bad.write_bytes(content)
    code, out, err = run(capsys, "models", "add", "bad", "--onnx", str(bad), "--repo", str(tmp_path / "repo"))
    assert code == 2 and err.startswith("sai: error: ") and "Traceback" not in err
    assert any(m in err for m in message.split("|")), err
    assert not (tmp_path / "repo" / "bad").exists()


def test_refuses_a_newer_opset_and_unsupported_dtypes(tmp_path):
    with pytest.raises(add.AddError, match=r"opset 99, newer than onnxruntime"):
        add.inspect(_opset(tmp_path, 99))
    model = add.load_graph(tiny_classifier(tmp_path / "c.onnx", dtype=TensorProto.COMPLEX64))
    with pytest.raises(add.AddError, match="COMPLEX64, which Triton cannot serve"):
        add.inspect(model)


def _opset(tmp_path, opset):
    """A valid model stamped with a future opset (the checker would refuse to build one)."""
    model = onnx.load(str(tiny_classifier(tmp_path / "o.onnx")))
    model.opset_import[0].version = opset
    return model


def test_refuses_duplicate_and_invalid_names(tmp_path, capsys):
    onnx_file = tiny_classifier(tmp_path / "m.onnx")
    repo = tmp_path / "repo"
    (repo / "taken").mkdir(parents=True)
    code, _, err = run(capsys, "models", "add", "taken", "--onnx", str(onnx_file), "--repo", str(repo))
    assert code == 2 and "model 'taken' already exists" in err
    code, _, err = run(capsys, "models", "add", "Bad Name", "--onnx", str(onnx_file), "--repo", str(repo))
    assert code == 2 and "invalid model name" in err


@pytest.fixture
def project(tmp_path):
    """A copy of the project's stack.yml, function templates and model configs (no model files)."""
    root = paths.repo_root()
    shutil.copy2(root / "stack.yml", tmp_path / "stack.yml")
    for name in ("image-classify", "text-embed"):
        shutil.copytree(root / "functions" / name, tmp_path / "functions" / name)
    shutil.copytree(root / "model_repository", tmp_path / "model_repository", ignore=shutil.ignore_patterns("1", "*.onnx"))
    (tmp_path / "tests").mkdir()
    return tmp_path


@pytest.mark.parametrize("template,model", [("image-classify", "image_classifier"), ("text-embed", None), ("blank", None)])
def test_new_function_scaffolds_handler_test_and_stack_entry(project, template, model):
    import yaml

    from sai.local.stack import load_stack

    new_function(project, "my-fn", template, model, echo=lambda *_: None)
    assert (project / "functions" / "my-fn" / "handler.py").is_file()
    assert len((project / "functions" / "my-fn" / "handler.py").read_text().splitlines()) <= 60
    assert (project / "functions" / "my-fn" / "requirements.txt").is_file()
    test_src = (project / "tests" / "test_fn_my_fn.py").read_text()
    compile(test_src, "test_fn_my_fn.py", "exec")
    assert "/function/my-fn" in test_src
    stack = load_stack(project / "stack.yml")
    fn = stack.functions["my-fn"]
    assert fn.handler == (project / "functions" / "my-fn").resolve()
    assert fn.environment["exec_timeout"] == "555s" and fn.labels["com.openfaas.scale.max"] == "5"
    expected = {"image-classify": ("MODEL_NAME", "image_classifier"), "text-embed": ("ENCODER_MODEL", "text_encoder")}
    if template in expected:
        key, value = expected[template]
        assert fn.environment[key] == value
    spec = yaml.safe_load((project / "stack.yml").read_text())["functions"]["my-fn"]
    assert spec["image"] == "${REGISTRY:-localhost:5001}/my-fn:0.1.0" and spec["readonly_root_filesystem"] is True


def test_new_refuses_existing_invalid_names_and_unknown_models(project, capsys, monkeypatch):
    monkeypatch.setenv("SAI_REPO", str(project))
    before = (project / "stack.yml").read_text()
    for argv, message in [
        (["new", "image-classify", "--from", "blank"], "function 'image-classify' already exists"),
        (["new", "My_Fn", "--from", "blank"], "invalid function name 'My_Fn'"),
        (["new", "bad-", "--from", "blank"], "invalid function name"),
        (["new", "x" * 64, "--from", "blank"], "invalid function name"),
        (["new", "fn", "--from", "image-classify", "--model", "nope"], "unknown model 'nope'"),
        # a path or YAML, not a name: it was written into stack.yml as is
        (["new", "fn", "--from", "image-classify", "--model", "../model_repository/image_classifier"], "invalid model name"),
        (["new", "fn", "--from", "text-embed", "--model", "text_encoder/."], "invalid model name"),
        (["new", "fn", "--from", "image-classify", "--model", "image_classifier\n  x: 1"], "invalid model name"),
    ]:
        code, _, err = run(capsys, *argv)
        assert code == 2 and message in err, (argv, err)
    assert (project / "stack.yml").read_text() == before
    assert sorted(p.name for p in (project / "functions").iterdir()) == ["image-classify", "text-embed"]
