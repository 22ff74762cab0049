"""Functions as stack.yml declares them, and their build contexts.

`build_context` lays out a function exactly as faas-cli does before `docker build`: the handler
folder's files under `function/`, then every `configuration.copy` path under `function/<path>`.
The local platform runs that folder, so what runs here is what runs in the container.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

SKIPPED = {"build", "template", "__pycache__"}  # faas-cli skips build/ and template/
ENV_REF = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


@dataclass
class Function:
    name: str
    handler: pathlib.Path
    image: str = ""
    environment: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)  # names in the secret store (sai/local/secrets_store.py)


@dataclass
class Stack:
    path: pathlib.Path
    functions: dict[str, Function]
    copy: list[str]

    @property
    def root(self) -> pathlib.Path:
        return self.path.parent


def envsubst(text: str, env: Mapping[str, str] | None = None) -> str:
    """faas-cli's substitution before it parses stack.yml (drone/envsubst, on by default):
    ${VAR} and ${VAR:-default} (the default when VAR is unset or empty), from `env` (os.environ)."""
    values: Mapping[str, str] = os.environ if env is None else env
    return ENV_REF.sub(lambda m: values.get(m.group(1)) or (m.group(2) or ""), text)


def load_stack(path: pathlib.Path) -> Stack:
    doc = yaml.safe_load(envsubst(path.read_text())) or {}
    functions = {}
    for name, spec in (doc.get("functions") or {}).items():
        functions[name] = Function(
            name=name,
            handler=(path.parent / spec["handler"]).resolve(),
            image=spec.get("image", ""),
            environment={k: str(v) for k, v in (spec.get("environment") or {}).items()},
            labels={k: str(v) for k, v in (spec.get("labels") or {}).items()},
            annotations={k: str(v) for k, v in (spec.get("annotations") or {}).items()},
            secrets=[str(s) for s in spec.get("secrets") or []],
        )
    copy = list((doc.get("configuration") or {}).get("copy") or [])
    return Stack(path=path, functions=functions, copy=copy)


def build_context(stack: Stack, fn: Function, out: pathlib.Path) -> pathlib.Path:
    """Write `out/function/...` as faas-cli would; returns `out` (the folder to put on sys.path)."""
    target = out / "function"
    if out.exists():
        shutil.rmtree(out)
    target.mkdir(parents=True)
    ignore = shutil.ignore_patterns(*SKIPPED, "*.pyc")
    for item in fn.handler.iterdir():
        if item.name in SKIPPED:
            continue
        if item.is_dir():
            shutil.copytree(item, target / item.name, ignore=ignore)
        else:
            shutil.copy2(item, target / item.name)
    for extra in stack.copy:
        src = (stack.root / extra).resolve()
        if not src.is_relative_to(stack.root.resolve()) or src == stack.root.resolve():
            raise ValueError(f"configuration.copy path {extra!r} is outside the project")
        dst = target / os.path.normpath(extra)  # faas-cli: path.Join(handlerDst, extraPath)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=ignore, dirs_exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return out
