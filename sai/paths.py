"""Where things live: the repository (functions, models, stack.yml) and local state (logs, pids)."""

from __future__ import annotations

import os
import pathlib
import sys


def repo_root() -> pathlib.Path:
    """The project checkout; SAI_REPO overrides (the package is installed editable from it)."""
    env = os.environ.get("SAI_REPO")
    return pathlib.Path(env).resolve() if env else pathlib.Path(__file__).resolve().parents[1]


def state_dir() -> pathlib.Path:
    """Logs, pid and state files, function build folders: `<repo>/.sai` unless SAI_STATE_DIR."""
    env = os.environ.get("SAI_STATE_DIR")
    path = pathlib.Path(env).resolve() if env else repo_root() / ".sai"
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_repository() -> pathlib.Path:
    return repo_root() / "model_repository"


def import_common() -> None:
    """Make the functions' shared package (`common/`) importable as `common` from the repo root,
    so the benchmarks' baselines and the model training run the very code the functions run."""
    root = str(repo_root())
    if root not in sys.path:
        sys.path.insert(0, root)
