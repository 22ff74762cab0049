"""How a FunctionDeployment (faas-cli deploy) selects a function folder, and the overlay on
stack.yml that keeps deploys, removals and replica counts across restarts (sai/local/deployments.py)."""

from __future__ import annotations

import textwrap

import pytest

from sai.local.deployments import DeployError, Deployments, check_request, image_base, resolve
from sai.local.stack import load_stack


@pytest.fixture
def stack(tmp_path):
    for name in ("echo", "other"):
        (tmp_path / "functions" / name).mkdir(parents=True)
        (tmp_path / "functions" / name / "handler.py").write_text("def handle(e, c):\n    return None\n")
    (tmp_path / "functions" / "no-handler").mkdir()
    (tmp_path / "stack.yml").write_text(
        textwrap.dedent("""
        functions:
          echo:
            handler: ./functions/echo
            image: ${REGISTRY:-localhost:5001}/echo:0.1.0
            environment: {A: "1", B: "2"}
            labels: {team: a}
            secrets: [api-key]
        """)
    )
    return load_stack(tmp_path / "stack.yml")


@pytest.mark.parametrize(
    "image, base",
    [
        ("localhost:5001/image-classify:0.1.0", "image-classify"),
        ("ghcr.io/team/sub/text-embed@sha256:abc", "text-embed"),
        ("echo", "echo"),
        ("registry:5000/echo:1@sha256:abc", "echo"),
    ],
)
def test_image_base(image, base):
    assert image_base(image) == base


def test_the_image_selects_the_folder_and_the_service_names_it(stack):
    spec = resolve(stack, check_request({"service": "greeter", "image": "localhost:5001/echo:2", "envVars": {"B": "x"}}))
    assert spec.name == "greeter" and spec.handler == stack.functions["echo"].handler
    assert spec.environment == {"A": "1", "B": "x"} and spec.labels == {"team": "a"} and spec.secrets == []
    assert stack.functions["echo"].secrets == ["api-key"]  # stack.yml's secrets are read
    folder = resolve(stack, check_request({"service": "o", "image": "other:latest", "labels": {"x": "y"}}))
    assert folder.handler.name == "other" and folder.labels == {"x": "y"}


@pytest.mark.parametrize("image", ["nginx:1.27", "no-handler", "..", "x/..:1", ".hidden"])
def test_an_image_of_no_folder_is_400(stack, image):
    with pytest.raises(DeployError) as err:
        resolve(stack, check_request({"service": "web", "image": image}))
    assert err.value.status == 400 and err.value.code == "unknown_image"
    assert "matches no function folder" in err.value.message


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"image": "echo"},
        {"service": "Bad_Name", "image": "echo"},
        {"service": "a" * 64, "image": "echo"},
        {"service": "ok", "image": ""},
        {"service": "ok", "image": "echo", "envVars": {"A": 1}},
        {"service": "ok", "image": "echo", "secrets": "api-key"},
    ],
)
def test_bad_deployments_are_400(body):
    with pytest.raises(DeployError) as err:
        check_request(body)
    assert err.value.status == 400


def test_the_overlay_survives_a_reload(stack, tmp_path):
    d = Deployments.load(tmp_path)
    d.deploy(check_request({"service": "kept", "image": "other"}))
    d.scale("kept", 3)
    d.remove("echo", in_stack=True)
    again = Deployments.load(tmp_path)
    functions = again.apply(load_stack(stack.path)).functions
    assert set(functions) == {"kept"} and again.replicas == {"kept": 3}
    again.deploy(check_request({"service": "echo", "image": "echo"}))  # deployed again: back
    assert set(Deployments.load(tmp_path).apply(load_stack(stack.path)).functions) == {"kept", "echo"}


def test_a_bad_scaling_label_is_400_naming_it():
    with pytest.raises(DeployError) as err:
        check_request({"service": "web", "image": "echo", "labels": {"com.openfaas.scale.zero-duration": "soon"}})
    assert err.value.status == 400 and err.value.code == "invalid_label"
    assert "com.openfaas.scale.zero-duration" in err.value.message
    ok = {"com.openfaas.scale.zero": "true", "com.openfaas.scale.zero-duration": "2s", "team": "a"}
    assert check_request({"service": "web", "image": "echo", "labels": ok})["labels"] == ok
