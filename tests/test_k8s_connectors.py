"""Offline checks of the chart's event connectors (templates/connectors.yaml): off by default;
when on, the pinned upstream images, the settings each connector reads at that tag, the gateway's
credentials, and the topics stack.yml's functions subscribe to. Nothing here runs a cluster:
the facts are from upstream source at the pinned tags (cited in the template and docs/triggers.md)."""

from __future__ import annotations

import re

import pytest
import yaml
from helpers import MODELS_BUCKET

from sai.k8s.helm_kubectl import REPO_ROOT, ManifestValidator, render_chart
from sai.local.triggers import annotations

ON = ["connectors.cron.enabled=true", "connectors.nats.enabled=true"]
# What each connector reads from its environment at the pinned tag (cron-connector 0.7.0
# config.go, main.go, types/credentials.go; nats-connector 0.3.0 config/config.go and
# connector-sdk v0.6.7 types/credentials.go), and what faas-netes 0.18.17's charts set.
CRON_ENV = {"gateway_url", "asynchronous_invocation", "rebuild_interval", "basic_auth", "secret_mount_path"}
NATS_ENV = CRON_ENV | {"topics", "topic_delimiter", "broker_host", "upstream_timeout"}
IMAGES = {"cron": "ghcr.io/openfaas/cron-connector:0.7.0", "nats": "ghcr.io/openfaas/nats-connector:0.3.0"}


def connectors(objs) -> dict[str, dict]:
    return {
        o["metadata"]["labels"]["app.kubernetes.io/component"].removesuffix("-connector"): o
        for o in objs
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-connector")
    }


def container(deployment) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def env(deployment) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(deployment)["env"]}


def seconds(duration: str) -> int:
    return int(re.fullmatch(r"(\d+)s", duration).group(1))


def test_off_by_default():
    assert connectors(render_chart([MODELS_BUCKET])) == {}


@pytest.mark.parametrize("profile", ["values-gpu.yaml", "values-kind.yaml"])
def test_connectors_render_and_validate(profile):
    objs = render_chart([REPO_ROOT / "charts/serverless-ai" / profile, MODELS_BUCKET], ON)
    found = connectors(objs)
    assert set(found) == {"cron", "nats"}
    validator = ManifestValidator()
    assert not [e for o in found.values() for e in validator.errors(o)]
    for kind, dep in found.items():
        assert container(dep)["image"] == IMAGES[kind]
        assert dep["metadata"]["namespace"] == "openfaas"  # where the gateway's basic-auth Secret is
        assert dep["spec"]["replicas"] == 1
        values = env(dep)
        assert set(values) == (CRON_ENV if kind == "cron" else NATS_ENV)
        assert values["gateway_url"] == "http://gateway.openfaas:8080"
        assert values["basic_auth"] == "true" and values["asynchronous_invocation"] == "false"
        mount = container(dep)["volumeMounts"][0]
        assert mount["mountPath"] == values["secret_mount_path"] and mount["readOnly"] is True
        volume = dep["spec"]["template"]["spec"]["volumes"][0]
        assert volume["name"] == mount["name"] and volume["secret"]["secretName"] == "basic-auth"


def test_nats_connector_subscribes_to_every_topic_of_the_stack():
    """nats-connector subscribes only to its `topics` (config.go), split on topic_delimiter; a
    function whose topic is not among them would never run."""
    nats = env(connectors(render_chart([MODELS_BUCKET], sets=ON))["nats"])
    subscribed = {t for t in nats["topics"].split(nats["topic_delimiter"]) if t}
    stack = yaml.safe_load((REPO_ROOT / "stack.yml").read_text())
    wanted = {t for f in stack["functions"].values() for t in annotations.topics(f.get("annotations") or {})}
    assert wanted == {"images", "reviews"}
    assert wanted <= subscribed
    for f in stack["functions"].values():  # and every annotation there is one the connectors take
        annotations.check_annotations(f.get("annotations") or {})


def test_nats_connector_waits_longer_than_the_gateway():
    objs = render_chart([MODELS_BUCKET], sets=ON)
    timeouts = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-timeouts"))["data"]
    assert seconds(env(connectors(objs)["nats"])["upstream_timeout"]) > int(timeouts["gatewayTimeoutSeconds"])


@pytest.mark.parametrize(
    "bad",
    ["connectors.nats.topics=a b", "connectors.cron.rebuildInterval=soon", "connectors.cron.image=cron-connector"],
)
def test_bad_connector_values_are_refused(bad):
    with pytest.raises(Exception, match="values don't meet the specifications|schema"):
        render_chart([MODELS_BUCKET], sets=[bad])
