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


class Classifier:
    """A classification model's config, read and checked once: the image input (ImageSpec), the
    output Triton ranks (the one with a label file, else the first), its class count, and whether
    its scores are logits. A config this function cannot use raises FunctionError naming why."""

    def __init__(self, config: dict):
        self.image = imaging.ImageSpec(config)
        outputs = config.get("output") or []
        if not outputs:
            raise imaging.unsupported_model(config.get("name", "the model"), ["it has no output"])
        out = next((o for o in outputs if o.get("label_filename")), outputs[0])
        self.output, self.classes = out["name"], int((out.get("dims") or [0])[-1])
        if self.classes < 1:
            raise imaging.unsupported_model(config.get("name", "the model"), [f"output {self.output!r} has no fixed class count"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.logits = params.get("apply_softmax") == "true"


_classifiers: dict[tuple[str, str], Classifier] = {}


def classifier(model: str) -> Classifier:
    """`model`'s Classifier, checked the first time its config is read (per Triton URL): on the
    first call, not at import, since Triton may be scaled to zero while the function starts."""
    key = (triton.url(), model)
    if key not in _classifiers:
        _classifiers[key] = Classifier(triton.model_config(model))
    return _classifiers[key]


def classify_image(data: bytes, top_k: int = 5) -> dict:
    model = model_name()
    spec = classifier(model)
    output, logits = spec.output, spec.logits

    t0 = time.perf_counter()
    img = imaging.decode(data, min_short_side=spec.image.short_side)
    t1 = time.perf_counter()
    batch = spec.image.tensor(img)[np.newaxis]
    t2 = time.perf_counter()
    result = triton.infer(model, {spec.image.input: batch}, {output: spec.classes if logits else top_k})
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
