"""Which Triton models the started functions need, so `sai up --only X` loads just those.

A function names its model in its environment (stack.yml): `MODEL_NAME` (image-classify,
object-classify, text-sentiment, text-entities) or `ENCODER_MODEL` (text-embed, text-keywords), as
`sai new` writes them. An ensemble needs its steps too. A function that names no model could call
any, so then every model is loaded (the behaviour before --only trimmed it).
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sai.models.config import read_config

if TYPE_CHECKING:
    from sai.local.stack import Function

MODEL_SETTINGS = ("MODEL_NAME", "ENCODER_MODEL")


def model_config(repo: pathlib.Path, name: str, config_name: str = "local") -> dict | None:
    """The config Triton loads for `name` here (configs/<config_name>.pbtxt, else config.pbtxt)."""
    folder = repo / name
    for path in (folder / "configs" / f"{config_name}.pbtxt", folder / "config.pbtxt"):
        if path.is_file():
            return read_config(path)
    return None


def needed_models(functions: Iterable[Function], repo: pathlib.Path, config_name: str = "local") -> list[str] | None:
    """Sorted model names the functions (sai.local.stack.Function objects) call, ensemble steps
    included; None when one of them names no model (then load them all)."""
    todo = []
    for spec in functions:
        names = [spec.environment[k] for k in MODEL_SETTINGS if spec.environment.get(k)]
        if not names:
            return None
        todo += names
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += steps(repo, name, config_name)
    return sorted(seen)


def steps(repo: pathlib.Path, name: str, config_name: str = "local") -> list[str]:
    """The models an ensemble runs ([] for a model that is not one)."""
    config = model_config(repo, name, config_name) or {}
    return [step["model_name"] for step in config.get("ensemble_scheduling", {}).get("step", [])]


def ensembles_using(repo: pathlib.Path, models: set[str], candidates: Iterable[str], config_name: str = "local") -> set[str]:
    """Those of `candidates` that are ensembles running one of `models`: unloaded with them."""
    return {c for c in candidates if models & set(steps(repo, c, config_name))}
