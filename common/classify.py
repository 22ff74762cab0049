"""Image bytes -> top-k ImageNet labels through Triton. Shared by image-classify and object-classify."""

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


def classify_image(data: bytes, top_k: int = 5) -> dict:
    model = model_name()
    config = triton.model_config(model)
    spec = imaging.ImageSpec(config)  # cheap; the config itself is cached
    output = _class_output(config)

    t0 = time.perf_counter()
    img = imaging.decode(data, min_short_side=spec.short_side)
    t1 = time.perf_counter()
    batch = spec.tensor(img)[np.newaxis]
    t2 = time.perf_counter()
    result = triton.infer(model, {spec.input: batch}, {output: top_k})
    t3 = time.perf_counter()

    predictions = []
    for entry in result[output][0]:
        score, class_id, *label = entry.decode().split(":", 2)
        predictions.append({"label": label[0] if label else class_id, "class_id": int(class_id), "score": round(float(score), 6)})
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
