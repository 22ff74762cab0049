"""The local platform's secret store, for `faas-cli secret` (/system/secrets).

Each secret is one file, 0600, in `<state>/secret-store/` (0700). A function deployed with
`secrets: [name]` reads it as OpenFaaS mounts it, `/var/openfaas/secrets/<name>`: locally the
platform copies the function's secrets into `<state>/function-secrets/<function>/` and points the
function's SECRETS_DIR there, so code that opens `os.path.join(SECRETS_DIR, name)` (default
/var/openfaas/secrets) reads the same relative path in both places. Values are never logged and
never listed.

No secret can become code (docs/reliability.md, item 2): names that Python or the loader would
pick up from a folder (`*.py`, `*.pth`, `*.so`, hidden files) are refused, the mounts are outside
every folder a function's interpreter imports from (it runs with `-I`, and deployments may not
set PYTHONPATH and the like: sai/local/deployments.py), and a value is at most 1 MiB, the limit
Kubernetes puts on a Secret. Deleting a secret or a function removes its mounted copies.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
from collections.abc import Iterable

from sai.local.responses import GatewayError

# A Kubernetes Secret's name (DNS-1123 subdomain), what faas-netes accepts; it also keeps a name
# from leaving the store's folder, and from being hidden (a leading dot).
NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
# Names an interpreter or loader would take as code: Python sources and bytecode, .pth files
# (site.py runs their `import` lines), shared libraries (also versioned, libx.so.1).
CODE_NAME = re.compile(r"\.(py[cwo]?|pth|so)(\.[0-9.]+)?$")
# Kubernetes' limit on a Secret's data (k8s.io/kubernetes pkg/apis/core/validation MaxSecretSize).
MAX_VALUE_BYTES = 1024 * 1024


class SecretError(GatewayError):
    """A secret request refused (the /system/secrets API answers it)."""


def _private_dir(path: pathlib.Path) -> pathlib.Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _write_private(path: pathlib.Path, value: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(value)


class SecretStore:
    def __init__(self, state_dir: pathlib.Path):
        self.folder = state_dir / "secret-store"
        self.mounts = state_dir / "function-secrets"

    def _path(self, name: str) -> pathlib.Path:
        if not isinstance(name, str) or not NAME.match(name) or ".." in name:
            raise SecretError(400, "invalid_secret_name", f"secret name {name!r} must be lower-case letters, digits, '-' or '.'")
        if CODE_NAME.search(name):
            raise SecretError(
                400, "invalid_secret_name", f"secret name {name!r} ends like code (.py, .pth, .so ...): choose another"
            )
        return self.folder / name

    @staticmethod
    def _check_value(name: str, value: bytes) -> None:
        if len(value) > MAX_VALUE_BYTES:
            raise SecretError(
                413,
                "secret_too_large",
                f"secret {name!r} is {len(value)} bytes; at most {MAX_VALUE_BYTES} (1 MiB, as Kubernetes)",
            )

    def names(self) -> list[str]:
        return sorted(p.name for p in self.folder.iterdir() if p.is_file()) if self.folder.is_dir() else []

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def create(self, name: str, value: bytes) -> None:
        path = self._path(name)
        self._check_value(name, value)
        if path.exists():
            # 400, not faas-netes' 409: the published spec (0.8.12) documents 201/400/500 only
            raise SecretError(400, "secret_exists", f"secret {name!r} already exists; use `faas-cli secret update`")
        _private_dir(self.folder)
        _write_private(path, value)

    def update(self, name: str, value: bytes) -> None:
        path = self._path(name)
        self._check_value(name, value)
        if not path.is_file():
            raise SecretError(404, "secret_not_found", f"no secret named {name!r}")
        _write_private(path, value)

    def delete(self, name: str) -> None:
        path = self._path(name)
        if not path.is_file():
            raise SecretError(404, "secret_not_found", f"no secret named {name!r}")
        path.unlink()
        for copy in self.mounts.glob(f"*/{name}"):  # the copies functions had mounted
            copy.unlink(missing_ok=True)

    def unmount(self, function: str) -> None:
        """Forget a removed function's copies."""
        shutil.rmtree(self.mounts / function, ignore_errors=True)

    def prune(self, functions: Iterable[str]) -> None:
        """Remove the copies of functions that no longer run (removed while the platform was down)."""
        if self.mounts.is_dir():
            for folder in self.mounts.iterdir():
                if folder.name not in functions:
                    shutil.rmtree(folder, ignore_errors=True)

    def mount(self, function: str, names: list[str]) -> pathlib.Path:
        """The function's SECRETS_DIR: a fresh copy of the named secrets (the missing are skipped,
        as they cannot be deployed: see Platform.deploy)."""
        folder = self.mounts / function
        shutil.rmtree(folder, ignore_errors=True)
        _private_dir(self.mounts)
        _private_dir(folder)
        for name in names:
            if self.exists(name):
                _write_private(folder / name, self._path(name).read_bytes())
        return folder
