"""`sai models build`: make the model repository's built artefacts, offline and reproducibly.

Each model module has `MODEL_NAME`, `is_built(repo)` and `build(repo, progress) -> report`. Builds are
skipped when the artefacts exist (use --force to rebuild); the reports are printed as JSON.
"""

from __future__ import annotations

import importlib
import json
import pathlib
import time

from tqdm import tqdm

# Build order matters only where a model depends on another's artefacts.
MODEL_MODULES = [
    "sai.models.image_classifier",
    "sai.models.text_encoder",
    "sai.models.sentiment_training",  # committed head + the text_sentiment ensemble; needs text_encoder
    "sai.models.entity_training",  # committed head + the text_entities ensemble; needs text_encoder
]


def modules():
    return [importlib.import_module(m) for m in MODEL_MODULES]


def build_all(repo: pathlib.Path, only: list[str] | None = None, force: bool = False) -> dict[str, dict]:
    selected = [m for m in modules() if not only or m.MODEL_NAME in only]
    unknown = set(only or []) - {m.MODEL_NAME for m in selected}
    if unknown:
        raise ValueError(f"unknown model(s): {', '.join(sorted(unknown))}")
    reports: dict[str, dict] = {}
    with tqdm(total=len(selected), unit="model", desc="models", dynamic_ncols=True) as bar:
        for module in selected:
            if module.is_built(repo) and not force:
                bar.write(f"{module.MODEL_NAME}: up to date")
                reports[module.MODEL_NAME] = {"skipped": "up to date"}
                bar.update(1)
                continue
            start = time.perf_counter()

            def progress(message: str, name=module.MODEL_NAME) -> None:
                bar.set_postfix_str(f"{name}: {message}")
                bar.write(f"{name}: {message}")

            report = module.build(repo, progress)
            report["seconds"] = round(time.perf_counter() - start, 1)
            reports[module.MODEL_NAME] = report
            bar.write(f"{module.MODEL_NAME}: built in {report['seconds']}s " + json.dumps(report))
            bar.update(1)
    return reports
