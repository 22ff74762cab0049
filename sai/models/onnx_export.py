"""One exporter for the trained text heads (sentiment_head, entity_head): trace the head's
`probabilities` to ONNX and check onnxruntime's answers against PyTorch's before the file is
kept, so a graph that differs from the trained head is never served."""

from __future__ import annotations

import pathlib
import tempfile
import warnings

import numpy as np

TOLERANCE = 1e-4


def export_checked(
    head,
    name: str,
    samples: list[tuple[np.ndarray, ...]],
    input_names: tuple[str, ...],
    output: str,
    dynamic_axes: dict,
    path: pathlib.Path,
    mask_arg: int | None = None,
) -> float:
    """Export `head` (LoRA already merged) to `path`, traced on `samples[0]` and checked on every
    sample; with `mask_arg`, only positions where that input is set are compared (padding is
    free). Returns the max abs difference; raises RuntimeError over TOLERANCE."""
    import onnxruntime as ort
    import torch

    class Served(torch.nn.Module):
        def __init__(self, head):
            super().__init__()
            self.head = head

        def forward(self, *inputs):
            return self.head.probabilities(*inputs)

    served = Served(head).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = pathlib.Path(tmp) / "model.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                served,
                tuple(torch.from_numpy(a) for a in samples[0]),
                str(tmp_path),
                input_names=list(input_names),
                output_names=[output],
                dynamic_axes=dynamic_axes,
                opset_version=17,
                dynamo=False,
            )
        sess = ort.InferenceSession(str(tmp_path), providers=["CPUExecutionProvider"])
        diff = 0.0
        for args in samples:
            with torch.no_grad():
                ref = served(*(torch.from_numpy(a) for a in args)).numpy()
            err = np.abs(ref - sess.run([output], dict(zip(input_names, args)))[0])
            if mask_arg is not None:
                err = err[args[mask_arg].astype(bool)]
            diff = max(diff, float(err.max()))
        if diff > TOLERANCE:
            raise RuntimeError(f"exported {name} differs from PyTorch: {diff:.2e}")
        tmp_path.replace(path)
    return diff
