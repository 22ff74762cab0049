"""An example "bring your own model": the built EfficientNet-Lite0 rewritten as a plain float32 NCHW
classifier, the shape most exported ImageNet models have. Used by docs/models.md's "Serve your own
model" section and by the tests of `sai models add`.

    python -m sai.models.fp32_example /tmp/effnet_fp32.onnx

The shipped `image_classifier` takes uint8 NHWC and normalises and transposes inside its graph,
and ends in a softmax. This rewrite removes those nodes, so the graph takes `pixel_values` (float32
N,3,224,224, already normalised with mean 0.498 / std 0.502) and returns raw logits as `scores`:
other tensor names, other layout and dtype, no softmax. No weights change, so it needs neither
torch nor a download, only the built repository.
"""

from __future__ import annotations

import pathlib
import sys

from sai import paths

MEAN, STD = "0.498,0.498,0.498", "0.502,0.502,0.502"
PREPROCESSING = {"Transpose", "Cast", "Div", "Sub"}


def float_nchw_logits(dst: pathlib.Path, src: pathlib.Path | None = None) -> pathlib.Path:
    import onnx
    from onnx import TensorProto, helper

    src = src or paths.model_repository() / "image_classifier" / "1" / "model.onnx"
    model = onnx.load(str(src))
    g = model.graph
    first_conv = next(i for i, n in enumerate(g.node) if n.op_type == "Conv")
    normalised = g.node[first_conv].input[0]
    for node in [n for n in g.node[:first_conv] if n.op_type in PREPROCESSING]:
        g.node.remove(node)
    for node in [n for n in g.node if n.op_type == "Softmax"]:
        g.node.remove(node)
    for node in g.node:
        for k, name in enumerate(node.input):
            if name in ("image", normalised):
                node.input[k] = "pixel_values"
        for k, name in enumerate(node.output):
            if name == "logits":
                node.output[k] = "scores"
    used = {name for n in g.node for name in n.input}
    for init in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(init)
    batch = g.input[0].type.tensor_type.shape.dim[0].dim_param or "batch"
    del g.input[:]
    g.input.append(helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [batch, 3, 224, 224]))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, 1000]))
    onnx.checker.check_model(model)
    dst = pathlib.Path(dst)
    onnx.save(model, str(dst))
    return dst


if __name__ == "__main__":
    out = float_nchw_logits(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "effnet_fp32.onnx"))
    print(f"wrote {out} (input pixel_values float32 N,3,224,224; output scores = logits; mean {MEAN}, std {STD})")
