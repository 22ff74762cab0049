"""OpenFaaS's scaling labels as the local platform reads them (sai/local/scale_policy.py), the
autoscaler's decisions (sai/local/autoscale.py), with the worked examples of OpenFaaS's own
documentation (openfaas/docs docs/architecture/autoscaling.md), and the models' memory budget's
choices (sai/local/model_memory.py)."""

from __future__ import annotations

import pytest

from sai.local.autoscale import Autoscaler, Load, LoadMeter
from sai.local.model_memory import PER_FILE_MB, STUB_BASE_MB, estimate_mb, victims
from sai.local.scale_policy import Defaults, LabelError, ScalePolicy, parse_duration, scale_policy

P = "com.openfaas.scale."


@pytest.mark.parametrize(
    "text, seconds",
    [("15m", 900), ("1h30m", 5400), ("2.5s", 2.5), ("500ms", 0.5), ("0", 0), ("1m0.5s", 60.5), (".5h", 1800)],
)
def test_go_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "15", "-5m", "5 m", "1d", "m", "1.2.3s"])
def test_not_go_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_no_labels_give_openfaas_defaults_with_the_local_cap():
    assert scale_policy({}) == ScalePolicy(
        min=1, max=5, zero=False, zero_duration_s=900, target=50, type="rps", target_proportion=0.9, down_window_s=0
    )


def test_every_label_is_read():
    labels = {
        P + "min": "2",
        P + "max": "4",
        P + "zero": "true",
        P + "zero-duration": "30s",
        P + "target": "5",
        P + "type": "capacity",
        P + "target-proportion": "1.0",
        P + "down.window": "10s",
    }
    assert scale_policy(labels) == ScalePolicy(2, 4, True, 30, 5, "capacity", 1.0, 10)


def test_platform_defaults_apply_only_where_a_label_is_absent():
    defaults = Defaults(zero=True, zero_duration_s=60, down_window_s=20)
    assert scale_policy({}, defaults).zero and scale_policy({}, defaults).zero_duration_s == 60
    opted_out = scale_policy({P + "zero": "false", P + "down.window": "0s"}, defaults)
    assert not opted_out.zero and opted_out.down_window_s == 0


def test_max_past_the_local_cap_is_capped_not_refused():
    # a stack file written for OpenFaaS Pro (default max 20) still runs here
    assert scale_policy({P + "max": "20"}).max == 5


@pytest.mark.parametrize(
    "labels, names",
    [
        ({P + "min": "one"}, "com.openfaas.scale.min='one' is not a whole number"),
        ({P + "min": "0"}, "must be at least 1"),
        ({P + "min": "3", P + "max": "2"}, "is below com.openfaas.scale.min"),
        ({P + "zero": "yes"}, "must be true or false"),
        ({P + "zero-duration": "15"}, "com.openfaas.scale.zero-duration: '15' is not a duration"),
        ({P + "zero-duration": "0s"}, "longer than 0s"),
        ({P + "target": "0"}, "com.openfaas.scale.target='0' must be at least 0.01"),
        ({P + "target": "nan"}, "target='nan'"),
        ({P + "type": "cpu"}, "com.openfaas.scale.type='cpu' is not supported here"),
        ({P + "target-proportion": "0"}, "must be over 0"),
        ({P + "target-proportion": "1.5"}, "at most 1"),
        ({P + "down.window": "10m"}, "com.openfaas.scale.down.window='10m' must be at most 5m"),
    ],
)
def test_bad_labels_are_errors_that_name_them(labels, names):
    with pytest.raises(LabelError, match=None) as err:
        scale_policy(labels)
    assert names in str(err.value)


@pytest.mark.parametrize(
    "load, target, proportion, ready, want",
    [
        (15, 5, 1.0, 1, 3),  # "3 = ceil ( 1 * ( 15 / 5 * 1 ) )"
        (25, 5, 1.0, 3, 5),  # "5 = ceil( 3 * ( 8.33 / 5 * 1 ) )"
        (0, 5, 1.0, 3, 1),  # "0 ... brought up to the minimum range which is 1"
        (90, 100, 0.7, 1, 2),  # "2 = ceil( 1 * ( 90 / ( 100 * 0.7 ) ) )"
        (45, 50, 0.9, 1, 1),  # exactly at target x proportion: no extra replica
        (1000, 50, 0.9, 1, 5),  # never past max
    ],
)
def test_openfaas_documented_examples(load, target, proportion, ready, want):
    policy = ScalePolicy(min=1, max=5, target=target, type="capacity", target_proportion=proportion)
    assert Autoscaler().decide(policy, ready, Load(load, 0, 0), now=0)[0] == want


def test_rps_mode_scales_on_completed_calls_per_second():
    policy = ScalePolicy(target=10, target_proportion=1.0, type="rps")
    assert Autoscaler().decide(policy, 1, Load(inflight=50, rps=25, idle_s=0), 0)[0] == 3


def test_scale_up_at_once_scale_down_only_past_the_down_window():
    policy = ScalePolicy(min=1, max=5, target=1, target_proportion=1.0, type="capacity", down_window_s=10)
    scaler = Autoscaler()
    assert scaler.decide(policy, 1, Load(4, 0, 0), now=0)[0] == 4
    # the load drops: held at the window's highest recommendation until it has passed
    assert scaler.decide(policy, 4, Load(1, 0, 0), now=5)[0] == 4
    assert scaler.decide(policy, 4, Load(2, 0, 0), now=9)[0] == 4
    assert scaler.decide(policy, 4, Load(1, 0, 0), now=10.5)[0] == 2  # the 4 at t=0 has left; the 2 at t=9 has not
    assert scaler.decide(policy, 2, Load(1, 0, 0), now=19.5)[0] == 1


def test_without_a_down_window_it_follows_the_load():
    policy = ScalePolicy(target=1, target_proportion=1.0, type="capacity")
    scaler = Autoscaler()
    assert [scaler.decide(policy, r, Load(x, 0, 0), t)[0] for t, (r, x) in enumerate([(1, 3), (3, 1), (1, 2)])] == [3, 1, 2]


def test_zero_after_zero_duration_idle_only_when_allowed_and_stays_there():
    zero = ScalePolicy(min=2, zero=True, zero_duration_s=30)
    scaler = Autoscaler()
    assert scaler.decide(zero, 2, Load(0, 0, idle_s=29.9), 0)[0] == 2
    wanted, why = scaler.decide(zero, 2, Load(0, 0, idle_s=30), 1)
    assert wanted == 0 and "idle for 30.0s" in why
    assert scaler.decide(zero, 0, Load(0, 0, idle_s=99), 2)[0] == 0  # only a request wakes it
    assert scaler.decide(ScalePolicy(min=2), 2, Load(0, 0, idle_s=1e6), 3)[0] == 2  # zero: false


def test_load_meter_means_over_the_window():
    meter = LoadMeter(now=0, window_s=5)
    for t in (0, 1):  # two calls in flight from t=0 and t=1
        meter.started(t)
    assert meter.sample(2).inflight == pytest.approx((2 * 1 + 1 * 1) / 2)
    meter.ended(3)
    meter.ended(4)
    load = meter.sample(4)
    assert load.rps == pytest.approx(2 / 4) and load.idle_s == 0
    assert meter.sample(10).inflight == pytest.approx(0) and meter.sample(10).idle_s == 6
    # the window slides: calls of long ago no longer count
    assert meter.sample(20).rps == 0


def test_idle_is_zero_while_a_call_is_in_flight():
    meter = LoadMeter(now=0)
    meter.started(1)
    assert meter.idle_s(100) == 0
    meter.ended(100)
    assert meter.idle_s(130) == 30


# ---- the models' memory budget (sai/local/model_memory.py) -------------------------------------


def test_victims_are_least_recently_used_and_never_pinned():
    loaded = {"a": 100.0, "b": 100.0, "c": 100.0}
    used = {"a": 30.0, "b": 10.0, "c": 20.0}
    assert victims(50, loaded, used, pinned=set(), budget_mb=350) == []  # fits as it is
    assert victims(50, loaded, used, pinned=set(), budget_mb=300) == ["b"]  # the oldest goes first
    assert victims(150, loaded, used, pinned={"b"}, budget_mb=300) == ["c", "a"]
    # all that may go does not make room: they go, and the caller loads over budget
    assert victims(500, loaded, used, pinned={"a"}, budget_mb=300) == ["b", "c"]


def test_estimate_before_the_first_measurement(tmp_path):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "model.onnx").write_bytes(b"\0" * 8_000_000)
    one = estimate_mb(tmp_path, "m", {"instance_group": [{"count": 1}]})
    assert one == pytest.approx(STUB_BASE_MB + PER_FILE_MB * 8)
    assert estimate_mb(tmp_path, "m", {"instance_group": [{"count": 2}]}) == pytest.approx(2 * one)
    assert estimate_mb(tmp_path, "ens", {"platform": "ensemble"}) == 0
