"""OpenFaaS's scaling labels across the three places a function runs (docs/scaling.md), offline:

- the chart's Knative function mode turns them into Knative autoscaling annotations, which must
  pass Knative's own validation (a port of knative/serving knative-v1.23.0
  pkg/apis/autoscaling/annotation_validation.go, below) and mean what the labels mean locally
  (sai/local/scale_policy.py);
- OpenFaaS CE refuses some of them (faas-netes 0.18.17 pkg/handlers/validate.go, ported below),
  so the shipped stack.yml must carry none of those, or `faas-cli deploy -f stack.yml` fails on CE.

Runs the real helm binary on the chart."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import yaml
from helpers import MODELS_BUCKET

from sai.k8s.helm_kubectl import CHART_DIR, REPO_ROOT, render_chart
from sai.local.scale_policy import MAX_REPLICAS, ScalePolicy, parse_duration, scale_policy
from sai.sai_error import SaiError

P = "com.openfaas.scale."
K = "autoscaling.knative.dev/"
KNATIVE = [CHART_DIR / "values-knative.yaml", MODELS_BUCKET]
FUNCTIONS = ["image-classify", "text-sentiment", "text-embed", "text-keywords", "text-entities", "object-classify"]


def knative_errors(ann: dict[str, str]) -> list[str]:
    """Knative's ValidateAnnotations for the KPA class, the checks our annotations can meet:
    validateMinMaxScale, validateFloats, validateLastPodRetention, validateScaleDownDelay,
    validateMetric (KPA: concurrency or rps)."""
    errors = []

    def ge0(key):
        value = ann.get(K + key)
        if value is None:
            return 0
        if not re.fullmatch(r"-?\d+", value) or int(value) < 0:
            errors.append(f"{key}={value!r}")
            return 0
        return int(value)

    low, high = ge0("min-scale"), ge0("max-scale")
    if high and high < low:
        errors.append(f"max-scale={high} is less than min-scale={low}")
    if (activation := ann.get(K + "activation-scale")) is not None:
        n = int(activation)
        if low > n or (high and high < n) or n < 2:
            errors.append(f"activation-scale={n}")
    if (target := ann.get(K + "target")) is not None and float(target) < 0.01:
        errors.append(f"target {target} should be at least 0.01")
    if (tu := ann.get(K + "target-utilization-percentage")) is not None and not 1 <= float(tu) <= 100:
        errors.append(f"target-utilization-percentage={tu}")
    for key in ("scale-to-zero-pod-retention-period", "scale-down-delay"):
        if (value := ann.get(K + key)) is not None and not 0 <= parse_duration(value) <= 3600:
            errors.append(f"{key}={value}")
    if (delay := ann.get(K + "scale-down-delay")) is not None and parse_duration(delay) != round(parse_duration(delay)):
        errors.append(f"scale-down-delay={delay} must be specified with at most second precision")
    if ann.get(K + "class") != "kpa.autoscaling.knative.dev":
        errors.append("not the KPA class (the only one that scales to zero)")
    if ann.get(K + "metric", "concurrency") not in ("concurrency", "rps"):
        errors.append(f"metric={ann[K + 'metric']!r} is not a KPA metric")
    return errors


def meaning(ann: dict[str, str]) -> ScalePolicy:
    """What Knative will do with the annotations, in the local policy's terms."""
    zero = ann[K + "min-scale"] == "0"
    low = int(ann.get(K + "activation-scale", "1")) if zero else int(ann[K + "min-scale"])
    return ScalePolicy(
        min=low,
        max=int(ann[K + "max-scale"]),
        zero=zero,
        zero_duration_s=parse_duration(ann.get(K + "scale-to-zero-pod-retention-period", "15m")),
        target=float(ann[K + "target"]),
        type={"concurrency": "capacity", "rps": "rps"}[ann[K + "metric"]],
        target_proportion=float(ann[K + "target-utilization-percentage"]) / 100,
        down_window_s=parse_duration(ann.get(K + "scale-down-delay", "0")),
    )


def knative_annotations(objs, name: str) -> dict[str, str]:
    svc = [o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == name]
    assert len(svc) == 1, name
    return svc[0]["spec"]["template"]["metadata"]["annotations"]


def render_with_labels(tmp_path, labels: dict, per_function: dict | None = None, mode: str = "knative"):
    values = {"functions": {"mode": mode, "imageRegistry": "registry.example.com/sai", "labels": labels}}
    if per_function:
        values["functions"]["items"] = {n: {"enabled": True, "labels": ls} for n, ls in per_function.items()}
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return render_chart([MODELS_BUCKET, path])


FULL = {
    P + "min": "2",
    P + "max": "4",
    P + "zero": "true",
    P + "zero-duration": "90s",
    P + "target": "5",
    P + "type": "capacity",
    P + "target-proportion": "0.7",
    P + "down.window": "30s",
}


def test_every_label_becomes_its_knative_annotation(tmp_path):
    ann = knative_annotations(render_with_labels(tmp_path, FULL), "image-classify")
    assert {k: v for k, v in ann.items() if k.startswith(K)} == {
        K + "class": "kpa.autoscaling.knative.dev",
        K + "min-scale": "0",  # zero: true
        K + "activation-scale": "2",  # a wake starts min replicas
        K + "max-scale": "4",
        K + "metric": "concurrency",  # capacity = in-flight calls per replica
        K + "target": "5",
        K + "target-utilization-percentage": "70",
        K + "scale-to-zero-pod-retention-period": "90s",
        K + "scale-down-delay": "30s",
    }
    assert not knative_errors(ann)
    assert meaning(ann) == scale_policy(FULL)  # the same meaning as `sai up` gives them


def test_absent_labels_take_openfaas_defaults_not_knatives(tmp_path):
    # null deletes the chart's own defaults (Helm's rule for user values)
    ann = knative_annotations(render_with_labels(tmp_path, {P + "min": None, P + "max": None}), "text-embed")
    assert ann[K + "min-scale"] == "1" and ann[K + "max-scale"] == "20"  # OpenFaaS Pro's defaults
    assert ann[K + "metric"] == "rps" and ann[K + "target"] == "50" and ann[K + "target-utilization-percentage"] == "90"
    assert K + "scale-to-zero-pod-retention-period" not in ann and K + "activation-scale" not in ann
    assert not knative_errors(ann)


def test_per_function_labels_override_the_common_ones(tmp_path):
    objs = render_with_labels(tmp_path, {P + "max": "3"}, {"text-sentiment": {P + "zero": "true", P + "max": "2"}})
    assert knative_annotations(objs, "text-sentiment")[K + "max-scale"] == "2"
    assert knative_annotations(objs, "text-sentiment")[K + "min-scale"] == "0"
    assert knative_annotations(objs, "text-embed")[K + "max-scale"] == "3"
    assert knative_annotations(objs, "text-embed")[K + "min-scale"] == "1"


def test_the_knative_profile_scales_functions_to_zero_and_means_the_same_as_locally():
    labels = yaml.safe_load((CHART_DIR / "values-knative.yaml").read_text())["functions"]["labels"]
    objs = render_chart(KNATIVE)
    for name in FUNCTIONS:
        ann = knative_annotations(objs, name)
        assert not knative_errors(ann), name
        assert ann[K + "min-scale"] == "0", name
        # the same, but for the one machine's cap of 5 replicas (scale_policy.MAX_REPLICAS)
        assert replace(meaning(ann), max=min(meaning(ann).max, MAX_REPLICAS)) == scale_policy(labels), name


def test_knative_validation_port_can_fail():
    """Guards the guard: the port rejects what Knative rejects."""
    ok = {K + "class": "kpa.autoscaling.knative.dev", K + "min-scale": "0", K + "max-scale": "3"}
    assert not knative_errors(ok)
    assert knative_errors({**ok, K + "activation-scale": "1"})
    assert knative_errors({**ok, K + "min-scale": "4"})
    assert knative_errors({**ok, K + "metric": "cpu"})
    assert knative_errors({**ok, K + "target-utilization-percentage": "120"})
    assert knative_errors({**ok, K + "scale-to-zero-pod-retention-period": "2h"})
    assert knative_errors({**ok, K + "scale-down-delay": "1500ms"})
    assert knative_errors({**ok, K + "target": "0.001"})


@pytest.mark.parametrize(
    "labels, message",
    [
        ({P + "type": "cpu"}, "com.openfaas.scale.type"),  # KPA cannot; HPA cannot scale to zero
        ({P + "zero": True}, "com.openfaas.scale.zero"),  # a YAML boolean, not the string labels are
        ({P + "zero-duration": "15"}, "zero-duration"),
        ({P + "target-proportion": "90"}, "target-proportion"),
        ({P + "min": "0"}, "com.openfaas.scale.min"),
        ({P + "min": "3", P + "max": "2"}, "max=2 is below com.openfaas.scale.min=3"),
        ({P + "zero": "true", P + "zero-duration": "61m"}, "at most 1h"),
        ({P + "zero": "true", P + "zero-duration": "1h0m1s"}, "at most 1h"),
        ({P + "down.window": "1500ms"}, "whole seconds"),
        ({P + "down.window": "5m1s"}, "at most 5m"),
        ({P + "target": "0.001"}, "at least 0.01"),
    ],
)
def test_the_chart_refuses_labels_knative_cannot_honour(tmp_path, labels, message):
    with pytest.raises(SaiError) as err:
        render_with_labels(tmp_path, labels)
    assert message in str(err.value)


def test_openfaas_mode_passes_every_label_on(tmp_path):
    objs = render_with_labels(tmp_path, FULL, mode="openfaas")
    fn = next(o for o in objs if o["kind"] == "Function" and o["metadata"]["name"] == "image-classify")
    assert {k: v for k, v in fn["spec"]["labels"].items() if k.startswith(P)} == FULL


# ---- OpenFaaS CE ----------------------------------------------------------------------------------


def ce_refuses(labels: dict[str, str]) -> str | None:
    """faas-netes 0.18.17 pkg/handlers/validate.go validateScalingLabels: CE answers a deploy with
    400 "validation failed: ..." for these."""
    if labels.get(P + "zero") == "true":
        return "com.openfaas.scale.zero not available for Community Edition"
    for key in ("zero-duration", "target", "type"):
        if P + key in labels:
            return f"com.openfaas.scale.{key} not available for Community Edition"
    for key in ("max", "min"):
        if re.fullmatch(r"[-+]?\d+", labels.get(P + key, "x")) and int(labels[P + key]) > 5:  # MaxReplicas
            return f"com.openfaas.scale.{key} is set too high for Community Edition"
    return None


def test_the_shipped_stack_deploys_on_openfaas_ce():
    stack = yaml.safe_load((REPO_ROOT / "stack.yml").read_text())
    for name, fn in stack["functions"].items():
        assert ce_refuses({k: str(v) for k, v in fn.get("labels", {}).items()}) is None, name
    # the guard can fail: what OpenFaaS Pro and Knative would honour, CE refuses
    assert "zero not available" in ce_refuses({P + "zero": "true"})
    assert "zero-duration not available" in ce_refuses({P + "zero": "false", P + "zero-duration": "15m"})
    assert "max is set too high" in ce_refuses({P + "max": "20"})
    assert ce_refuses({P + "zero": "false", P + "target-proportion": "0.8"}) is None
