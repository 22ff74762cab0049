"""Which kubeconfig `sai cluster` uses: --kubeconfig, else $KUBECONFIG, else ~/.kube/config.

There is deliberately no further fallback. kubectl, helm and the kubernetes client, given no
kubeconfig, talk to http://localhost:8080, which is where `sai up`'s gateway listens: a status
read would hit the local platform and a Helm install could be sent to it. So a missing kubeconfig
is an error (exit 2) that says what to pass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

EXIT_USAGE = 2


class KubeconfigError(Exception):
    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Kubeconfig:
    path: Path
    context: str | None
    source: str  # "--kubeconfig", "$KUBECONFIG" or "~/.kube/config"

    def helm_args(self) -> list[str]:
        args = ["--kubeconfig", str(self.path)]
        if self.context:
            args += ["--kube-context", self.context]
        return args


def resolve(flag: str | None, context: str | None = None, environ=None, home: Path | None = None) -> Kubeconfig:
    """The kubeconfig to use, checked to exist and to name a cluster; raises KubeconfigError."""
    environ = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    if flag:
        candidates, source = [Path(flag).expanduser()], "--kubeconfig"
    elif environ.get("KUBECONFIG"):
        # kubectl merges a colon-separated list; we take the first file that exists (one file is
        # what the Python client and `helm --kubeconfig` accept).
        candidates = [Path(p).expanduser() for p in environ["KUBECONFIG"].split(os.pathsep) if p]
        source = "$KUBECONFIG"
    else:
        candidates, source = [home / ".kube" / "config"], "~/.kube/config"
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        tried = ", ".join(str(p) for p in candidates)
        raise KubeconfigError(
            f"no kubeconfig ({source}: {tried} not found). `sai cluster` needs one and never falls back "
            "to localhost:8080 (where `sai up`'s gateway listens). Pass --kubeconfig FILE or set "
            "KUBECONFIG (kind: `kind get kubeconfig --name serverless-ai > kind.kubeconfig`)."
        )
    _check(path, context)
    return Kubeconfig(path=path.resolve(), context=context, source=source)


def _check(path: Path, context: str | None) -> None:
    """A kubeconfig without a usable context would make the client fall back to its default."""
    import yaml

    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise KubeconfigError(f"{path}: not a readable kubeconfig ({exc})") from None
    if not isinstance(doc, dict):
        raise KubeconfigError(f"{path}: not a kubeconfig (expected a mapping)")
    name = context or doc.get("current-context")
    if not name:
        raise KubeconfigError(f"{path}: no current-context; pass --context NAME")
    contexts = {c.get("name"): (c.get("context") or {}) for c in doc.get("contexts") or []}
    if name not in contexts:
        raise KubeconfigError(f"{path}: context {name!r} not found (have: {', '.join(sorted(map(str, contexts))) or 'none'})")
    clusters = {c.get("name"): (c.get("cluster") or {}) for c in doc.get("clusters") or []}
    cluster = clusters.get(contexts[name].get("cluster"))
    if not cluster or not cluster.get("server"):
        raise KubeconfigError(f"{path}: context {name!r} names no cluster with a server address")
