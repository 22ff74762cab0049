"""Functions deployed, updated, removed and scaled through the gateway's API (`faas-cli deploy`,
`faas-cli remove`, `faas-cli scale`), as an overlay on stack.yml kept in
`<state>/deployments.json`, so that it survives `sai down` / `sai up` and `sai reload`.

The local platform runs code from this checkout, not images: a deployment's image selects the
function folder by its name without registry or tag (`localhost:5001/image-classify:0.1.0` ->
image-classify), a function of stack.yml or a folder `functions/<name>/` with a handler.py; the
request's `service` is the name it runs under. The request is faas-provider's FunctionDeployment
(types/function_deployment.go), as faas-cli sends it (proxy/deploy.go); envVars, labels,
annotations and secrets apply, the rest (limits, requests, constraints...) has no local meaning.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import re
from dataclasses import dataclass, field, replace

from sai.local.responses import GatewayError
from sai.local.scale_policy import LabelError, scale_policy
from sai.local.stack import Function, Stack
from sai.local.triggers.annotations import AnnotationError, check_annotations

log = logging.getLogger(__name__)

NAMESPACE = "openfaas-fn"  # the one namespace of the local platform (/system/namespaces)
SERVICE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # a DNS-1123 label, as faas-netes requires
# an image name's last path component (distribution/reference grammar): never '..' or a hidden name
IMAGE_NAME = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")


class DeployError(GatewayError):
    """A deploy, update, scale or removal refused (the /system/functions API answers it)."""


def image_base(image: str) -> str:
    """`registry:5000/team/name:tag@sha256:...` -> name."""
    last = image.split("@", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


# Environment variables a deployment may not set: they change how the interpreter or the dynamic
# loader starts, so with them a deploy would run code from outside the checkout (a secret file on
# PYTHONPATH, a library in LD_PRELOAD). Checked against:
# - CPython 3.11 Doc/using/cmdline.rst "Environment variables" (`python --help-env`): every one is
#   PYTHON*, and several load code (PYTHONPATH, PYTHONHOME, PYTHONSTARTUP, PYTHONUSERBASE,
#   PYTHONBREAKPOINT, PYTHONWARNINGS imports warning categories, PYTHONPYCACHEPREFIX picks .pyc files);
# - glibc's ld.so(8) "Environment variables" (glibc 2.36, Debian 12): every one is LD_*; and the
#   variables glibc itself drops for set-user-ID programs (sysdeps/generic/unsecvars.h
#   UNSECURE_ENVVARS, plus GLIBC_TUNABLES and the MALLOC_* tunable aliases): GCONV_PATH and
#   NLSPATH/LOCPATH load modules and catalogues, MALLOC_TRACE writes a file anywhere, the
#   resolver ones redirect name lookups; TMPDIR, also listed there, only says where temporary
#   files go, and stays allowed;
# - OpenSSL 3 openssl-env(7): OPENSSL_CONF can load a provider or engine (a shared library) when
#   Python's ssl or hashlib starts OpenSSL; OPENSSL_MODULES and OPENSSL_ENGINES say where from.
DENIED_ENV_PREFIXES = ("PYTHON", "LD_", "MALLOC_", "OPENSSL_")
DENIED_ENV = frozenset(
    {
        "GCONV_PATH",
        "GETCONF_DIR",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "LOCPATH",
        "NIS_PATH",
        "NLSPATH",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
        "TZDIR",
    }
)


def denied_env(name: str) -> bool:
    return name.upper().startswith(DENIED_ENV_PREFIXES) or name.upper() in DENIED_ENV


def check_environment(env: dict[str, str]) -> None:
    """A deployment's envVars: names a process can be given, none that changes how it starts."""
    for name, value in env.items():
        if not name or "=" in name or not name.isprintable() or not name.isascii() or "\0" in value:
            raise DeployError(400, "invalid_deployment", f"envVars: {name!r} is not a usable variable (name or value)")
        if denied_env(name):
            raise DeployError(
                400,
                "env_not_allowed",
                f"envVars: {name} changes how the interpreter or the loader starts; the local platform runs "
                "code from the checkout only (docs/reliability.md lists what is refused)",
            )


def _string_map(request: dict, key: str) -> dict[str, str] | None:
    value = request.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise DeployError(400, "invalid_deployment", f"{key} must be an object of strings")
    return value


def check_request(request: object) -> dict:
    """The FunctionDeployment's fields this platform uses, validated (400 otherwise)."""
    if not isinstance(request, dict):
        raise DeployError(400, "invalid_deployment", "the body must be a FunctionDeployment JSON object")
    service, image = request.get("service"), request.get("image")
    if not isinstance(service, str) or not SERVICE.match(service):
        raise DeployError(400, "invalid_deployment", "service must be a DNS-1123 label (lower-case letters, digits, '-')")
    if not isinstance(image, str) or not image_base(image):
        raise DeployError(400, "invalid_deployment", "image must name a function folder of this checkout")
    secrets = request.get("secrets") or []
    if not isinstance(secrets, list) or not all(isinstance(s, str) for s in secrets):
        raise DeployError(400, "invalid_deployment", "secrets must be a list of secret names")
    checked: dict[str, object] = {"service": service, "image": image, "secrets": secrets}
    for key in ("envVars", "labels", "annotations"):
        if (value := _string_map(request, key)) is not None:
            checked[key] = value
    try:  # the scaling labels mean what they mean on OpenFaaS Pro: a bad one is refused, not ignored
        scale_policy(_string_map(request, "labels") or {})
    except LabelError as exc:
        raise DeployError(400, "invalid_label", str(exc)) from None
    check_environment(_string_map(request, "envVars") or {})
    try:  # trigger annotations (topic, schedule) that no connector could use
        check_annotations(_string_map(request, "annotations") or {})
    except AnnotationError as exc:
        raise DeployError(400, "invalid_annotation", str(exc)) from None
    return checked


def resolve(stack: Stack, request: dict) -> Function:
    """The function a checked deployment runs: its image's folder, under its service name."""
    base = image_base(request["image"])
    code = stack.functions.get(base)
    if code is None:
        folder = stack.root / "functions" / base
        if not IMAGE_NAME.match(base) or not (folder / "handler.py").is_file():
            known = sorted(set(stack.functions) | {p.parent.name for p in (stack.root / "functions").glob("*/handler.py")})
            raise DeployError(
                400,
                "unknown_image",
                f"image {request['image']!r} matches no function folder of this checkout (known: {', '.join(known)}); "
                "the local platform runs code from the checkout, not images",
            )
        code = Function(name=base, handler=folder.resolve())
    return replace(
        code,
        name=request["service"],
        image=request["image"],
        environment={**code.environment, **request.get("envVars", {})},
        labels=request.get("labels", code.labels),
        annotations=request.get("annotations", code.annotations),
        secrets=list(request["secrets"]),
    )


@dataclass
class Deployments:
    path: pathlib.Path
    deployed: dict[str, dict] = field(default_factory=dict)  # service -> checked FunctionDeployment
    removed: set[str] = field(default_factory=set)  # stack.yml functions removed through the API
    replicas: dict[str, int] = field(default_factory=dict)  # set by the scale API

    @classmethod
    def load(cls, state_dir: pathlib.Path) -> Deployments:
        path = state_dir / "deployments.json"
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(path)
        return cls(path, doc.get("deployed", {}), set(doc.get("removed", [])), doc.get("replicas", {}))

    def save(self) -> None:
        doc = {"deployed": self.deployed, "removed": sorted(self.removed), "replicas": self.replicas}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def apply(self, stack: Stack) -> Stack:
        """`stack` with this overlay: removed functions out, deployed ones in (its functions replaced)."""
        functions = {n: s for n, s in stack.functions.items() if n not in self.removed}
        for name, request in self.deployed.items():
            try:  # checked again: a request stored by an older version may not pass today's checks
                functions[name] = resolve(stack, check_request(request))
            except DeployError as exc:  # its folder went away since: not started, said why
                log.error("deployed function %s not started: %s", name, exc.message)
        stack.functions = functions
        return stack

    def deploy(self, request: dict) -> None:
        self.deployed[request["service"]] = request
        self.removed.discard(request["service"])
        self.replicas.pop(request["service"], None)
        self.save()

    def remove(self, name: str, in_stack: bool) -> None:
        self.deployed.pop(name, None)
        self.replicas.pop(name, None)
        if in_stack:
            self.removed.add(name)
        self.save()

    def scale(self, name: str, replicas: int) -> None:
        self.replicas[name] = replicas
        self.save()
