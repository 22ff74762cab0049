"""`sai models add NAME --onnx FILE`: put a user's ONNX model into the model repository.

The graph is read with `onnx` (input/output names, dtypes, shapes, whether the first dimension is a
batch dimension) and refused, with a message that says why, when it cannot be served: not ONNX or
truncated, an opset newer than the installed onnxruntime, dynamic dimensions other than the batch
that nothing pins, dtypes Triton has no type for. Then `model_repository/NAME/` gets `1/model.onnx`
and the three configs in the shipped models' style (`config.pbtxt` for GPUs with the native
onnxruntime backend, `configs/cpu.pbtxt`, `configs/local.pbtxt` for `sai up`). Image
preprocessing (size, resize, filter, mean/std) goes into the config `parameters` that
common/imaging.ImageSpec reads, so functions hold no model constants. Before anything is written
to the repository, the model is staged in a temporary repository, loaded into a real Triton with
the local config and run once on zeros.
"""

from __future__ import annotations

import functools
import logging
import math
import pathlib
import re
import shutil
import sys
from dataclasses import dataclass, field

from sai.local.processes import scratch_dir
from sai.sai_error import SaiError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
FILTERS = ("bicubic", "bilinear")
BATCH = {"gpu": 32, "cpu": 16, "local": 16}  # max_batch_size per config, as the shipped models

# ONNX TensorProto element type -> Triton data type (those both have; others are refused).
TRITON_TYPES = {
    1: "TYPE_FP32",
    2: "TYPE_UINT8",
    3: "TYPE_INT8",
    4: "TYPE_UINT16",
    5: "TYPE_INT16",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    8: "TYPE_STRING",
    9: "TYPE_BOOL",
    10: "TYPE_FP16",
    11: "TYPE_FP64",
    12: "TYPE_UINT32",
    13: "TYPE_UINT64",
    16: "TYPE_BF16",
}


# Memory per model (docs/reliability.md, items 11 and 12). One request's inputs at batch 1 above
# MAX_INPUT_BYTES are refused: the zeros check would allocate them in this process, Triton and the
# backend stub, and no function should send them. One call's tensors at the local max_batch_size
# above WARN_CALL_BYTES are allowed with a warning: dynamic batching can run such a call on each
# instance at once, and Triton's memory grows by that much.
MAX_INPUT_BYTES = 1 << 30
WARN_CALL_BYTES = 1 << 30


class AddError(SaiError):
    def __init__(self, message: str):
        super().__init__(message, exit_code=2)


@dataclass
class Tensor:
    name: str
    dtype: str  # Triton TYPE_*
    dims: list[int]  # without the batch dimension when batched; -1 = variable (outputs only)


@dataclass
class ImageOptions:
    labels: pathlib.Path | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    size: int | None = None
    resize_short_side: int | None = None
    resize_filter: str | None = None

    def given(self) -> bool:
        return any(v is not None for v in vars(self).values())


@dataclass
class Graph:
    inputs: list[Tensor]
    outputs: list[Tensor]
    batched: bool
    opset: int
    softmax_outputs: set[str] = field(default_factory=set)  # outputs a Softmax node produces
    fixed_batch_1: bool = False  # exported with a fixed batch of 1: served batched, max_batch_size 1


def _dims(value_info) -> list[int | str | None]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in shape.dim]


def _tensors(graph):
    """Every TensorProto of a graph: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                yield from _tensors(sub)


def load_graph(path: pathlib.Path):
    """The parsed and checked ModelProto, or AddError saying why it is not a usable ONNX file."""
    import onnx
    from google.protobuf.message import DecodeError

    if not path.is_file():
        raise AddError(f"{path}: no such file")
    try:
        # External data is never followed: its locations are the file's word (/etc/passwd, ../,
        # a symlink), and only model.onnx itself is copied into the repository.
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError, onnx.checker.ValidationError) as exc:
        raise AddError(f"{path} is not an ONNX model, or it is truncated (it does not parse as one: {exc})") from exc
    external = [t.name for t in _tensors(model.graph) if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise AddError(
            f"{path} keeps tensors in external data files ({', '.join(external[:3])}{' ...' if len(external) > 3 else ''}): "
            "save it as one file (onnx.save(model, path, save_as_external_data=False); under 2 GB)"
        )
    if not model.graph.node or not model.graph.output:
        raise AddError(f"{path} is not an ONNX model, or it is truncated (no graph nodes or outputs in it)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - onnx raises several kinds; all mean the same here
        raise AddError(f"{path} is not a valid ONNX model (truncated or corrupt?): {str(exc).splitlines()[0]}") from exc
    return model


@functools.cache
def max_supported_opset() -> int:
    """The newest ai.onnx opset the installed onnxruntime loads. Its API does not say, so ask it:
    the newest opset at which a one-node model opens (a newer stamp fails ValidateOpsetForDomain)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in "xy")
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    options = ort.SessionOptions()
    options.log_severity_level = 3  # no warnings about the probe
    for opset in range(40, 6, -1):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        try:
            ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            return opset
        except Exception:  # noqa: BLE001 - onnxruntime raises its own Fail type; any failure means "too new"
            continue
    return 7


def inspect(model, image: ImageOptions | None = None) -> Graph:
    """Names, Triton dtypes and dims; refuses what Triton cannot serve."""
    image = image or ImageOptions()
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset > (supported := max_supported_opset()):
        import onnxruntime as ort

        raise AddError(
            f"the model uses ONNX opset {opset}, newer than onnxruntime {ort.__version__} serves (up to {supported}): "
            f"re-export it with opset_version={supported} or lower"
        )
    initializers = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in initializers]
    if not graph_inputs:
        raise AddError("the model has no inputs")

    def dtype(vi) -> str:
        elem = vi.type.tensor_type.elem_type
        if not vi.type.HasField("tensor_type") or elem not in TRITON_TYPES:
            import onnx

            kind = onnx.TensorProto.DataType.Name(elem) if vi.type.HasField("tensor_type") else "a non-tensor type"
            raise AddError(f"tensor {vi.name!r} has {kind}, which Triton cannot serve")
        return TRITON_TYPES[elem]

    shapes = {vi.name: _dims(vi) for vi in [*graph_inputs, *model.graph.output]}
    # Batched when every input's first dimension is variable (a name or unset) and no output's is fixed.
    batched = all(len(s) > 0 and not isinstance(s[0], int) for s in (shapes[i.name] for i in graph_inputs)) and all(
        not s or not isinstance(s[0], int) or s[0] == 0 for s in (shapes[o.name] for o in model.graph.output)
    )
    # Many exports pin the batch to 1: Triton serves that as a batched model of max_batch_size 1,
    # so functions send the same [1, ...] tensors as to any other model.
    fixed_batch_1 = not batched and all(
        len(s) > 1 and s[0] == 1 for s in (shapes[vi.name] for vi in [*graph_inputs, *model.graph.output])
    )
    batched = batched or fixed_batch_1

    inputs = []
    for vi in graph_inputs:
        dims = shapes[vi.name][1:] if batched else shapes[vi.name]
        dims = _pin(vi.name, dims, image)
        inputs.append(Tensor(vi.name, dtype(vi), dims))
    outputs = []
    for vi in model.graph.output:
        dims = shapes[vi.name][1:] if batched else shapes[vi.name]
        outputs.append(Tensor(vi.name, dtype(vi), [d if isinstance(d, int) and d > 0 else -1 for d in dims]))
    # Log-probabilities and logits alike become probabilities by a softmax in the function.
    softmax = {o for n in model.graph.node if n.op_type == "Softmax" for o in n.output}
    return Graph(inputs, outputs, batched, opset, softmax & {o.name for o in outputs}, fixed_batch_1)


def _pin(name: str, dims: list, image: ImageOptions) -> list[int]:
    """Fixed dims for an input: a variable height/width of an image input is pinned by --image-size."""
    variable = [k for k, d in enumerate(dims) if not (isinstance(d, int) and d > 0)]
    if not variable:
        return [int(d) for d in dims]
    if len(dims) == 3 and image.size:
        channels = 0 if dims[0] == 3 else 2 if dims[2] == 3 else None
        if channels is not None and all(k != channels for k in variable):
            return [3 if k == channels else image.size for k in range(3)]
    shown = ["?" if k in variable else str(d) for k, d in enumerate(dims)]
    raise AddError(
        f"input {name!r} has dynamic dimensions other than the batch ([{', '.join(shown)}] after the batch "
        "dimension) that cannot be pinned: export it with fixed sizes"
        + ("" if len(dims) != 3 else ", or give --image-size N for an image input")
    )


def _size(n: float) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MiB"


def _itemsize(elem: int) -> int:
    """Bytes per element of an ONNX element type (strings: 0, their size is not in the graph)."""
    import onnx

    if elem in (0, onnx.TensorProto.STRING):
        return 0
    return onnx.helper.tensor_dtype_to_np_dtype(elem).itemsize


def check_input_size(model, graph: Graph) -> None:
    """Refuse inputs that one item alone makes larger than MAX_INPUT_BYTES (say, [3, 100000, 100000])."""
    elem = {vi.name: vi.type.tensor_type.elem_type for vi in model.graph.input}
    for t in graph.inputs:
        size = math.prod(t.dims) * _itemsize(elem[t.name])
        if size > MAX_INPUT_BYTES:
            raise AddError(
                f"input {t.name!r} {t.dtype[5:]} {t.dims} is {_size(size)} per item, over the {_size(MAX_INPUT_BYTES)} "
                "a request may carry here: export it with smaller dimensions"
            )


def call_bytes(model, graph: Graph, batch: int) -> int | None:
    """Bytes of the tensors one call of `batch` items holds (inputs, outputs and every intermediate
    whose shape the graph fixes, weights apart): an upper bound of what onnxruntime allocates, as it
    reuses buffers. None when ONNX's shape inference cannot run on the graph."""
    import onnx

    staged = onnx.ModelProto()
    staged.CopyFrom(model)
    pinned = {t.name: ([batch] if graph.batched else []) + t.dims for t in graph.inputs}
    for vi in staged.graph.input:
        if vi.name in pinned:
            dims = vi.type.tensor_type.shape.dim
            del dims[:]
            for d in pinned[vi.name]:
                dims.add().dim_value = d
    try:
        inferred = onnx.shape_inference.infer_shapes(staged)
    except Exception:  # noqa: BLE001 - onnx raises several kinds; the warning is then left out
        return None
    total, seen = 0, {i.name for i in model.graph.initializer}  # weights are not per call
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = _dims(vi)
        if vi.name in seen or not vi.type.HasField("tensor_type") or not all(isinstance(d, int) and d > 0 for d in dims):
            continue  # counted already, or a shape the graph leaves open
        seen.add(vi.name)
        total += math.prod(dims) * _itemsize(vi.type.tensor_type.elem_type)
    return total


def image_input(graph: Graph) -> Tensor | None:
    """The one image input (3 dims with a 3-channel axis first or last, uint8 or float32), if any."""
    if len(graph.inputs) != 1:
        return None
    inp = graph.inputs[0]
    ok = len(inp.dims) == 3 and 3 in (inp.dims[0], inp.dims[2]) and inp.dtype in ("TYPE_UINT8", "TYPE_FP32")
    return inp if ok else None


def _num(x: float) -> str:
    return f"{x:g}"


def parameters(graph: Graph, image: ImageOptions) -> dict[str, str]:
    """Config `parameters` the functions read (common/imaging.py, common/classify.py)."""
    inp = image_input(graph)
    if inp is None:
        if image.given():
            raise AddError("image options were given, but the model has no single image input (N,3,H,W or N,H,W,3 uint8/float32)")
        return {}
    size = max(inp.dims[1:] if inp.dims[0] == 3 else inp.dims[:2])
    params = {
        "resize_short_side": str(image.resize_short_side or size),
        "resize_filter": image.resize_filter or "bicubic",
    }
    if inp.dtype == "TYPE_FP32":
        params["mean"] = ",".join(_num(v) for v in image.mean or [0.0, 0.0, 0.0])
        params["std"] = ",".join(_num(v) for v in image.std or [1.0, 1.0, 1.0])
    elif image.mean or image.std:
        raise AddError("--image-mean/--image-std apply to float32 inputs; a uint8 model normalises inside its graph")
    out = class_output(graph)
    if out is not None and out.name not in graph.softmax_outputs:
        params["apply_softmax"] = "true"  # scores are logits: the function turns them into probabilities
    return params


def class_output(graph: Graph) -> Tensor | None:
    """The output holding class scores: the first float output with one variable-free dimension."""
    return next((o for o in graph.outputs if o.dtype in ("TYPE_FP32", "TYPE_FP16") and len(o.dims) == 1 and o.dims[0] > 0), None)


def render(name: str, graph: Graph, params: dict[str, str], labelled: str | None, kind: str) -> str:
    """One config.pbtxt: kind is gpu (config.pbtxt), cpu or local (configs/<kind>.pbtxt). Built as
    Triton's ModelConfig message: names from the graph are data, never config syntax."""
    from sai.models.config import config_text, messages

    pb = messages()
    comments = {
        "gpu": ["Production config: native ONNX Runtime backend on a GPU (stock tritonserver image)."],
        "cpu": ["CPU-only clusters (e.g. the kind profile): the stock image's native ONNX Runtime backend on CPU."],
        "local": [
            "Embedded platform (`sai up`): the PyPI tritonserver has only the Python backend, so the same",
            "model.onnx runs through our Python-based `onnx_local` backend (sai/local/triton_backends/onnx_local);",
            "intra_op_threads: onnxruntime threads per instance, allow_spinning 0: functions share the cores.",
        ],
    }[kind] + [f"Written by `sai models add {name}`; parameters are the preprocessing functions read (common/imaging.py)."]
    if kind != "local" and all(t.dtype != "TYPE_STRING" for t in graph.inputs):
        comments.append("model_warmup runs one batch at load, so the first request after a scale-from-zero is not the slow one.")
    config = pb.ModelConfig(name=name, max_batch_size=(1 if graph.fixed_batch_1 else BATCH[kind]) if graph.batched else 0)
    if kind == "local":
        config.backend = "onnx_local"
    else:
        config.platform = "onnxruntime_onnx"
    image = image_input(graph)
    for t in graph.inputs:
        config.input.add(name=t.name, data_type=pb.DataType.Value(t.dtype), dims=t.dims)
        if t is image:  # the layout, written out so that the function never has to guess it (common/imaging.py)
            config.input[-1].format = pb.ModelInput.Format.Value("FORMAT_NCHW" if t.dims[0] == 3 else "FORMAT_NHWC")
    for t in graph.outputs:
        label = "labels.txt" if t.name == labelled else ""
        config.output.add(name=t.name, data_type=pb.DataType.Value(t.dtype), dims=t.dims, label_filename=label)
    group = pb.ModelInstanceGroup.Kind.Value("KIND_GPU" if kind == "gpu" else "KIND_CPU")
    config.instance_group.add(kind=group, count=2 if kind == "local" else 1)
    if graph.batched and not graph.fixed_batch_1:
        config.dynamic_batching.max_queue_delay_microseconds = {"gpu": 2000, "cpu": 1000, "local": 0}[kind]
        if kind == "gpu":
            config.dynamic_batching.preferred_batch_size.extend([8, 16, 32])
    local = {"intra_op_threads": "1", "allow_spinning": "0"} if kind == "local" else {}
    for key, value in {**params, **local}.items():
        config.parameters[key].string_value = value
    if kind != "local" and all(t.dtype != "TYPE_STRING" for t in graph.inputs):
        warmup = config.model_warmup.add(
            name="zeros", batch_size=8 if kind == "gpu" and graph.batched and not graph.fixed_batch_1 else 1
        )
        for t in graph.inputs:
            warmup.inputs[t.name].CopyFrom(
                pb.ModelWarmup.Input(data_type=pb.DataType.Value(t.dtype), dims=t.dims, zero_data=True)
            )
    return config_text(config, comments)


def write_model(target: pathlib.Path, name: str, onnx_file: pathlib.Path, graph: Graph, image: ImageOptions) -> None:
    params = parameters(graph, image)
    labelled = None
    target.mkdir(parents=True, exist_ok=True)
    if image.labels is not None:
        labels = [line for line in image.labels.read_text().splitlines() if line.strip()]
        out = class_output(graph)
        if out is None:
            raise AddError("--labels given, but the model has no class-score output (float, one dimension)")
        if len(labels) != out.dims[0]:
            raise AddError(f"{image.labels} has {len(labels)} labels; output {out.name!r} has {out.dims[0]} classes")
        labelled = out.name
        (target / "labels.txt").write_text("\n".join(labels) + "\n")
    (target / "1").mkdir()
    shutil.copyfile(onnx_file, target / "1" / "model.onnx")
    (target / "configs").mkdir()
    (target / "config.pbtxt").write_text(render(name, graph, params, labelled, "gpu"))
    for kind in ("cpu", "local"):
        (target / "configs" / f"{kind}.pbtxt").write_text(render(name, graph, params, labelled, kind))
    # Each config must parse as Triton's ModelConfig (the same reader as everything else uses).
    from sai.models.config import read_config

    for path in [target / "config.pbtxt", *sorted((target / "configs").glob("*.pbtxt"))]:
        read_config(path)


def smoke_test(staged_repo: pathlib.Path, name: str, work: pathlib.Path, timeout: float = 120.0) -> dict:
    """Load the staged model into a real tritonserver (local config) and infer once on zeros."""
    from sai.local.model_check import infer_zeros
    from sai.local.triton_server import TritonServer
    from sai.models.config import read_config
    from sai.state import free_port

    server = TritonServer(staged_repo, work, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port())
    quiet = logging.getLogger("sai.local.triton_server")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # its start/stop lines name a log in a folder about to go
    server.start()
    try:
        try:
            server.wait_ready(timeout)
        except (TimeoutError, RuntimeError) as exc:
            log_lines = server.log_path.read_text(errors="replace").splitlines() if server.log_path.exists() else []
            why = [line for line in log_lines if name in line and ("E" == line[:1] or "fail" in line.lower())]
            raise AddError(f"Triton could not load {name}: {(why or [str(exc)])[-1]}") from exc
        try:
            return infer_zeros(server.url, name, read_config(staged_repo / name / "configs" / "local.pbtxt"), timeout)
        except RuntimeError as exc:
            raise AddError(f"Triton loaded {name} but {exc}") from exc
    finally:
        server.stop()
        quiet.setLevel(level)


def _warn(message: str) -> None:
    print(f"sai: warning: {message}", file=sys.stderr)


def add_model(
    repo: pathlib.Path, name: str, onnx_file: pathlib.Path, image: ImageOptions | None = None, echo=print, warn=_warn
) -> pathlib.Path:
    image = image or ImageOptions()
    if not NAME_RE.match(name):
        raise AddError(
            f"invalid model name {name!r}: use lowercase letters, digits, '_' and '-' (at most 63, starting with a letter or digit)"
        )
    if (repo / name).exists():
        raise AddError(f"model {name!r} already exists in {repo} (remove model_repository/{name}/ to replace it)")
    if image.resize_filter is not None and image.resize_filter not in FILTERS:
        raise AddError(f"--resize-filter must be one of {', '.join(FILTERS)}")
    for label, values in (("--image-mean", image.mean), ("--image-std", image.std)):
        if values is not None and len(values) != 3:
            raise AddError(f"{label} takes three values R,G,B (0-1 scale)")
    if image.std and any(v <= 0 for v in image.std):
        raise AddError("--image-std values must be positive")
    onnx_file = pathlib.Path(onnx_file)
    model = load_graph(onnx_file)
    graph = inspect(model, image)
    check_input_size(model, graph)
    batch = "fixed batch of 1" if graph.fixed_batch_1 else "batched (first dimension)" if graph.batched else "not batched"
    echo(f"{onnx_file.name}: opset {graph.opset}, {batch}")
    for kind, tensors in (("input", graph.inputs), ("output", graph.outputs)):
        for t in tensors:
            echo(f"  {kind:6} {t.name}: {t.dtype[5:]} {t.dims}")
    full = (1 if graph.fixed_batch_1 else BATCH["local"]) if graph.batched else 1
    if (held := call_bytes(model, graph, full)) is not None and held > WARN_CALL_BYTES:
        warn(
            f"one call of {full} item(s) may hold up to {_size(held)} of tensors (from the graph's shapes), over the "
            f"{_size(WARN_CALL_BYTES)} a model should stay under (docs/reliability.md); Triton grows by that much per "
            "busy instance: lower max_batch_size in configs/local.pbtxt, or give the machine the memory"
        )
    del model  # the staged copy is read from the file again
    with scratch_dir("sai-add-") as tmp:  # removed even if this command is killed
        staged = tmp / "repo" / name
        staged.mkdir(parents=True)
        write_model(staged, name, onnx_file, graph, image)
        echo(f"loading {name} into Triton (local config) and running it on zeros ...")
        shapes = smoke_test(staged.parent, name, tmp / "triton")
        echo("  " + ", ".join(f"{k} {v}" for k, v in shapes.items()))
        if (repo / name).exists():
            raise AddError(f"model {name!r} appeared in {repo} meanwhile; not overwriting it")
        shutil.copytree(staged, repo / name)
    params = parameters(graph, image)
    if params:
        echo("  parameters: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    where, cwd = (repo / name).resolve(), pathlib.Path.cwd().resolve()
    shown = where.relative_to(cwd) if where.is_relative_to(cwd) else where
    echo(f"added {name}: {shown}")
    echo(f"  on a cluster: list {name} in the chart's triton.models, then `sai cluster models push`")
    return repo / name
