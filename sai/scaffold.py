"""`sai new FUNCTION --from image-classify|text-embed|blank [--model NAME]`: a new function folder, a test
and a stack.yml entry, in the project's style.

- image-classify / text-embed: the shipped handler and requirements, unchanged: the model is picked
  by the environment (MODEL_NAME / ENCODER_MODEL) in the new stack.yml entry, and everything else
  the handler needs comes from the model's config (common/imaging.py, common/classify.py).
- blank: a JSON echo handler on common/'s request and error helpers, to start from.

The stack.yml entry is appended as text (comments and anchors stay as they are) and reuses the
shipped entries' anchors, so timeouts, limits and labels agree with the chart as the others do.
"""

from __future__ import annotations

import pathlib
import re
import shutil

import yaml

from sai.models.add import NAME_RE as MODEL_NAME_RE
from sai.sai_error import SaiError

TEMPLATES = ("image-classify", "text-embed", "blank")
# OpenFaaS function names are Kubernetes DNS-1123 labels (faas-netes validates them so).
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MODEL_ENV = {"image-classify": "MODEL_NAME", "text-embed": "ENCODER_MODEL"}
DEFAULT_MODEL = {"image-classify": "image_classifier", "text-embed": "text_encoder"}

BLANK_HANDLER = '''"""{name}: a new function. JSON in, JSON out.

Input (POST): a JSON object. Output: {{"function": "{name}", "received": <the object>}}.
"""

from .common import request
from .common.errors import handler_errors, json_response


@handler_errors
def handle(event, context):
    request.require_method(event, "POST")
    return json_response({{"function": "{name}", "received": request.json_body(event)}})
'''

TEST = {
    "image-classify": '''"""{name} (scaffolded by `sai new --from image-classify --model {model}`): a real photo through the
gateway, the function and Triton."""

import requests


def test_{ident}_classifies_a_photo(gateway, coffee_jpeg):
    r = requests.post(f"{{gateway}}/function/{name}", data=coffee_jpeg, headers={{"Content-Type": "image/jpeg"}}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "{model}" and len(body["predictions"]) == 5
    assert 0.0 <= body["predictions"][0]["score"] <= 1.0
''',
    "text-embed": '''"""{name} (scaffolded by `sai new --from text-embed --model {model}`): through the gateway and Triton."""

import requests


def test_{ident}_embeds_text(gateway):
    r = requests.post(f"{{gateway}}/function/{name}", json={{"texts": ["a cat", "a dog"]}}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "{model}" and len(body["embeddings"]) == 2
''',
    "blank": '''"""{name} (scaffolded by `sai new --from blank`): through the gateway."""

import requests


def test_{ident}_echoes_json(gateway):
    r = requests.post(f"{{gateway}}/function/{name}", json={{"hello": "world"}}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json() == {{"function": "{name}", "received": {{"hello": "world"}}}}
''',
}


class NewError(SaiError):
    def __init__(self, message: str):
        super().__init__(message, exit_code=2)


def stack_entry(name: str, template: str, model: str | None) -> str:
    env = "*textenv" if template == "text-embed" else "*env"
    lines = [
        "",
        f"  {name}:",
        "    lang: python3-http-debian",
        f"    handler: ./functions/{name}",
        f"    image: ${{REGISTRY:-localhost:5001}}/{name}:0.1.0",
    ]
    if template in MODEL_ENV:
        lines += ["    environment:", f"      <<: {env}", f"      {MODEL_ENV[template]}: {model}"]
    else:
        lines += ["    environment: *textenv"]
    lines += ["    labels: *labels", "    requests: *requests", "    limits: *limits", "    readonly_root_filesystem: true"]
    return "\n".join(lines) + "\n"


def new_function(root: pathlib.Path, name: str, template: str, model: str | None = None, echo=print) -> list[pathlib.Path]:
    """Scaffold function `name` in the project at `root`; returns the files written."""
    stack_file = root / "stack.yml"
    functions = (yaml.safe_load(stack_file.read_text()) or {}).get("functions") or {}
    if template not in TEMPLATES:
        raise NewError(f"unknown template {template!r}: use one of {', '.join(TEMPLATES)}")
    if not NAME_RE.match(name) or len(name) > 63:
        raise NewError(
            f"invalid function name {name!r}: OpenFaaS names are lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    if name in functions or (root / "functions" / name).exists():
        raise NewError(f"function {name!r} already exists (in stack.yml or functions/{name}/)")
    if template == "blank":
        if model:
            raise NewError("--model does not apply to --from blank")
    else:
        model = model or DEFAULT_MODEL[template]
        if not MODEL_NAME_RE.match(model):  # a name, never a path: it is written into stack.yml as is
            raise NewError(f"invalid model name {model!r}: lowercase letters, digits, '_' and '-' (as `sai models add` takes)")
        if not (root / "model_repository" / model / "config.pbtxt").is_file():
            known = sorted(p.parent.name for p in (root / "model_repository").glob("*/config.pbtxt"))
            raise NewError(f"unknown model {model!r}: model_repository/ has {', '.join(known)} (add one with `sai models add`)")
    ident = name.replace("-", "_")
    test_file = root / "tests" / f"test_fn_{ident}.py"
    if test_file.exists():
        raise NewError(f"{test_file} already exists")

    target = root / "functions" / name
    if template == "blank":
        target.mkdir(parents=True)
        (target / "handler.py").write_text(BLANK_HANDLER.format(name=name))
        (target / "requirements.txt").write_text("")
    else:
        source = root / "functions" / template
        target.mkdir(parents=True)
        for f in ("handler.py", "requirements.txt"):
            shutil.copy2(source / f, target / f)
    test_file.write_text(TEST[template].format(name=name, ident=ident, model=model))
    with stack_file.open("a") as f:
        f.write(stack_entry(name, template, model))
    written = [target / "handler.py", target / "requirements.txt", test_file, stack_file]
    for path in written:
        echo(f"  {'updated' if path == stack_file else 'created'} {path.relative_to(root)}")
    echo(f"new function {name} (from {template}{f', model {model}' if model else ''}): start it with `sai up` (or `sai reload`)")
    return written
