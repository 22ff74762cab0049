"""Image bytes -> top-k labels through Triton, for any classification model in the repository.
Shared by image-classify and object-classify.

Everything model-specific comes from the model's config: the input (ImageSpec: size, layout,
dtype, resize, mean/std) and the scores. Triton's classification extension ranks the scores
server-side; a model whose graph ends in logits (config parameter `apply_softmax: "true"`, written
by `sai models add`) has all its classes ranked and turned into probabilities here."""

from __future__ import annotations

import time

import numpy as np

from . import imaging, triton
from .settings import setting

MAX_TOP_K = 20

model_name = setting("MODEL_NAME", str, "image_classifier")  # the Triton model to call


def _class_output(config: dict) -> str:
    """The output Triton can rank (it has a label file), else the first output."""
    outputs = config["output"]
    return next((o["name"] for o in outputs if o.get("label_filename")), outputs[0]["name"])


def _classes(config: dict, output: str) -> int:
    """How many classes an output scores (its last dimension)."""
    return int(next(o for o in config["output"] if o["name"] == output)["dims"][-1])


def classify_image(data: bytes, top_k: int = 5) -> dict:
    model = model_name()
    config = triton.model_config(model)
    spec = imaging.ImageSpec(config)  # cheap; the config itself is cached
    output = _class_output(config)
    params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
    logits = params.get("apply_softmax") == "true"

    t0 = time.perf_counter()
    img = imaging.decode(data, min_short_side=spec.short_side)
    t1 = time.perf_counter()
    batch = spec.tensor(img)[np.newaxis]
    t2 = time.perf_counter()
    result = triton.infer(model, {spec.input: batch}, {output: _classes(config, output) if logits else top_k})
    t3 = time.perf_counter()

    ranked = [entry.decode().split(":", 2) for entry in result[output][0]]
    scores = np.array([float(r[0]) for r in ranked], np.float64)
    if logits:
        scores = np.exp(scores - scores.max())
        scores /= scores.sum()
    predictions = [
        {"label": r[2] if len(r) > 2 else r[1], "class_id": int(r[1]), "score": round(float(s), 6)}
        for r, s in zip(ranked[:top_k], scores[:top_k])
    ]
    return {
        "model": model,
        "model_version": result.model_version,
        "predictions": predictions,
        "timings_ms": {
            "decode": round((t1 - t0) * 1e3, 2),
            "preprocess": round((t2 - t1) * 1e3, 2),
            "inference": round((t3 - t2) * 1e3, 2),
        },
    }
