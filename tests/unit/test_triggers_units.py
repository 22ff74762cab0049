"""The trigger annotations and cron grammar as cron-connector 0.7.0 (robfig/cron v3.0.1) and
connector-sdk v0.6.7 read them, and the scheduler's rules for missed and overlapping runs, with
the clock passed in (sai/local/triggers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sai.local.triggers import cron
from sai.local.triggers.annotations import AnnotationError, check_annotations, schedule, topics
from sai.local.triggers.invoke import backoff_s

T0 = datetime(2026, 5, 1, 10, 7, 30, tzinfo=UTC)  # a Friday


def at(spec: str, after: datetime = T0) -> datetime:
    return cron.parse(spec).next(after)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("*/5 * * * *", datetime(2026, 5, 1, 10, 10)),
        ("0 3 * * *", datetime(2026, 5, 2, 3, 0)),
        ("5/15 * * * *", datetime(2026, 5, 1, 10, 20)),  # "N/step" is N-59/step
        ("0 9-17/4 * * mon-fri", datetime(2026, 5, 1, 13, 0)),
        ("0 0 * JAN,may *", datetime(2026, 5, 2, 0, 0)),  # names, any case
        ("0 0 13 * fri", datetime(2026, 5, 8, 0, 0)),  # both days restricted: either matches
        ("0 0 13 * *", datetime(2026, 5, 13, 0, 0)),
        ("0 0 13 * ?", datetime(2026, 5, 13, 0, 0)),  # ? is *
        ("0 0 13 * */1", datetime(2026, 5, 13, 0, 0)),  # */1 keeps the star: both must match
        ("0 0 13 * */2", datetime(2026, 5, 2, 0, 0)),  # */2 does not (Saturday 2nd matches)
        ("@hourly", datetime(2026, 5, 1, 11, 0)),
        ("@daily", datetime(2026, 5, 2, 0, 0)),
        ("@weekly", datetime(2026, 5, 3, 0, 0)),
        ("@monthly", datetime(2026, 6, 1, 0, 0)),
        ("@yearly", datetime(2027, 1, 1, 0, 0)),
        ("CRON_TZ=UTC 30 10 * * *", datetime(2026, 5, 1, 10, 30)),
        ("@every 90s", datetime(2026, 5, 1, 10, 9, 0)),
        ("@every 1.5h", datetime(2026, 5, 1, 11, 37, 30)),
        ("@every 200ms", datetime(2026, 5, 1, 10, 7, 31)),  # at least 1 s
        ("@every 2500ms", datetime(2026, 5, 1, 10, 7, 32)),  # whole seconds
    ],
)
def test_next_run(spec, expected):
    assert at(spec) == expected.replace(tzinfo=UTC)


def test_next_is_strictly_after():
    assert at("7 10 * * *", datetime(2026, 5, 1, 10, 7, tzinfo=UTC)) == datetime(2026, 5, 2, 10, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("", "empty"),
        ("* * * *", "exactly 5 fields"),
        ("0 0 0 * * *", "exactly 5 fields"),  # no seconds field in cron-connector's parser
        ("60 * * * *", "outside 0-59"),
        ("* 24 * * *", "outside 0-23"),
        ("* * 0 * *", "outside 1-31"),
        ("* * * 13 *", "outside 1-12"),
        ("* * * * 7", "outside 0-6"),  # robfig has no 7 for Sunday
        ("5-1 * * * *", "starts after it ends"),
        ("*/0 * * * *", "must be positive"),
        ("1-2-3 * * * *", "too many hyphens"),
        ("1/2/3 * * * *", "too many slashes"),
        ("x * * * *", "not a number"),
        ("* * * foo *", "not a number or one of jan"),
        ("L * * * *", "not a number"),
        ("0 0 30 2 *", "matches no date"),
        ("@reboot", "unknown descriptor"),
        ("@every", "unknown descriptor"),
        ("@every 5", "not a duration"),
        ("@every five minutes", "not a duration"),
        ("TZ=Europe/Paris 0 3 * * *", "UTC"),
        ("TZ=UTC", "followed by a space"),
    ],
)
def test_refused_schedules(spec, says):
    with pytest.raises(cron.CronError, match=says):
        cron.parse(spec)


def test_missed_runs_are_not_made_up_and_a_late_wake_runs_once():
    s = cron.Scheduler()
    assert s.sync({"nightly": "*/5 * * * *"}, T0) == (["nightly"], [])
    assert s.due(T0) == [] and s.seconds_to_next(T0) == 150.0
    late = T0 + timedelta(minutes=17)  # slept through 10:10, 10:15, 10:20
    assert [e.function for e in s.due(late)] == ["nightly"]
    assert s.entries["nightly"].next == datetime(2026, 5, 1, 10, 25, tzinfo=UTC)
    assert s.due(late) == []


def test_a_new_schedule_replaces_the_entry():
    s = cron.Scheduler()
    s.sync({"a": "@hourly", "b": "@daily"}, T0)
    assert s.sync({"a": "@daily"}, T0) == (["a"], ["a", "b"])
    assert s.entries["a"].spec == "@daily" and "b" not in s.entries


def test_topics_are_split_trimmed_and_deduplicated():
    assert topics({"topic": "images, reviews,,images , orders.eu"}) == ["images", "reviews", "orders.eu"]
    assert topics({"topic": "cron-function", "schedule": "@daily"}) == []
    assert topics({}) == []
    assert schedule({"topic": "cron-function", "schedule": "@daily"}) == "@daily"
    assert schedule({"topic": "images", "schedule": "@daily"}) is None


@pytest.mark.parametrize(
    ("notes", "says"),
    [
        ({"topic": ""}, "names no topic"),
        ({"topic": "a b"}, "not a NATS subject"),
        ({"topic": "orders.>"}, "wildcards"),
        ({"topic": "$JS.API"}, "not a NATS subject"),
        ({"topic": "a..b"}, "not a NATS subject"),
        ({"topic": "cron-function, images", "schedule": "@daily"}, "exactly 'cron-function'"),
        ({"schedule": "@daily"}, "needs topic='cron-function'"),
        ({"topic": "cron-function", "schedule": " "}, "needs a schedule"),
        ({"topic": "cron-function", "schedule": "@every x"}, "schedule='@every x'"),
    ],
)
def test_refused_annotations(notes, says):
    with pytest.raises(AnnotationError, match=says):
        check_annotations(notes)


def test_accepted_annotations():
    for notes in ({}, {"topic": "images"}, {"topic": "a.b, c-d,e_f"}, {"topic": "cron-function", "schedule": "0 3 * * *"}):
        check_annotations(notes)


def test_backoff_doubles_up_to_the_cap():
    assert [backoff_s(n, 1.0, 5.0) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
