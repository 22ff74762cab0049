"""The memory Triton's models take, and which to unload to stay within `sai up --models-memory MB`.

On this platform every model runs in its own Python-backend stub processes (one per instance,
children of tritonserver started as `triton_python_backend_stub <repo>/<model>/<version>/model.py
...`), so a model's memory is the resident memory of its stubs: measured after each load, and
estimated from its ONNX file before its first (below). Ensembles have no stub of their own.

When a model must load and the loaded ones plus it would pass the budget, the least recently
used models that no running function needs are unloaded first (`victims`). If that cannot make
room, the model loads anyway and the platform logs that it is over budget: a request is never
refused for memory.
"""

from __future__ import annotations

import pathlib

import psutil

from sai.local.model_deps import model_config

STUB_BASE_MB = 100.0  # a stub with numpy and onnxruntime, before the model (measured: 106-202 MB per stub)
PER_FILE_MB = 1.25  # resident MB per MB of ONNX file once onnxruntime has built its session


def stub_memory_mb(triton_pid: int, repo: pathlib.Path) -> dict[str, float]:
    """Model -> resident MB of its backend stubs, for the stubs of Triton `triton_pid` serving
    models of `repo` (10^6 bytes, as `sai bench startup` counts)."""
    out: dict[str, float] = {}
    try:
        children = psutil.Process(triton_pid).children()
    except psutil.NoSuchProcess:
        return out
    for child in children:
        try:
            args = child.cmdline()
            rss = child.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # a stub that just exited (an unload)
        if len(args) > 1 and pathlib.Path(args[1]).is_relative_to(repo):
            model = pathlib.Path(args[1]).relative_to(repo).parts[0]
            out[model] = out.get(model, 0.0) + rss / 1e6
    return out


def estimate_mb(repo: pathlib.Path, name: str, config: dict) -> float:
    """What `name` will take once loaded, before it has ever been measured: per instance a stub
    and its ONNX session (0 for an ensemble, whose steps are models of their own)."""
    if config.get("platform") == "ensemble":
        return 0.0
    files = sorted((repo / name).glob("*/model.onnx"))
    size_mb = files[-1].stat().st_size / 1e6 if files else 0.0
    instances = sum(int(g.get("count", 1)) for g in config.get("instance_group", [{}])) or 1
    return instances * (STUB_BASE_MB + PER_FILE_MB * size_mb)


def victims(
    need_mb: float, loaded_mb: dict[str, float], last_used: dict[str, float], pinned: set[str], budget_mb: float
) -> list[str]:
    """The models to unload, least recently used first, so that `need_mb` more fits in
    `budget_mb`; never one in `pinned` (a running function needs it). Fewer, or none, when the
    budget cannot be met even so: the caller loads anyway."""
    used, out = sum(loaded_mb.values()), []
    for name in sorted(set(loaded_mb) - pinned, key=lambda n: (last_used.get(n, 0.0), n)):
        if used + need_mb <= budget_mb:
            break
        out.append(name)
        used -= loaded_mb[name]
    return out


class ModelBudget:
    """The models' memory as the platform knows it: `limit_mb` (None: no budget), each model's
    size as last measured, or its estimate before that."""

    def __init__(self, repo: pathlib.Path, limit_mb: float | None, config_name: str = "local"):
        self.repo, self.limit_mb, self.config_name = repo, limit_mb, config_name
        self.measured: dict[str, float] = {}

    def size_mb(self, name: str) -> float:
        if name in self.measured:
            return self.measured[name]
        return estimate_mb(self.repo, name, model_config(self.repo, name, self.config_name) or {})

    def measure(self, triton_pid: int | None, loaded: set[str]) -> float:
        """Measure the loaded models' stubs now; their total (MB)."""
        if triton_pid is None:
            return 0.0
        stubs = stub_memory_mb(triton_pid, self.repo)
        self.measured.update({m: stubs.get(m, 0.0) for m in loaded})
        return sum(self.measured.get(m, 0.0) for m in loaded)

    def room_for(self, names: set[str], loaded: set[str], pinned: set[str], last_used: dict[str, float]) -> list[str]:
        """The loaded models to unload before `names` load (victims); [] without a budget."""
        if self.limit_mb is None:
            return []
        need = sum(self.size_mb(n) for n in names - loaded)
        return victims(need, {m: self.size_mb(m) for m in loaded}, last_used, pinned | names, self.limit_mb)
