"""Where things live: the repository (functions, models, stack.yml) and local state (logs, pids)."""

from __future__ import annotations

import pathlib

from common.settings import setting

SAI_REPO = setting("SAI_REPO", str, None)  # None: the checkout this package is installed from
SAI_STATE_DIR = setting("SAI_STATE_DIR", str, None)  # None: <repo>/.sai


def repo_root() -> pathlib.Path:
    """The project checkout; SAI_REPO overrides (the package is installed editable from it)."""
    env = SAI_REPO()
    return pathlib.Path(env).resolve() if env else pathlib.Path(__file__).resolve().parents[1]


def state_dir() -> pathlib.Path:
    """Logs, pid and state files, function build folders: `<repo>/.sai` unless SAI_STATE_DIR."""
    env = SAI_STATE_DIR()
    path = pathlib.Path(env).resolve() if env else repo_root() / ".sai"
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_repository() -> pathlib.Path:
    return repo_root() / "model_repository"
