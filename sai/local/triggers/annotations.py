"""The annotations that bind a function to triggers, read as OpenFaaS's connectors read them.

- `topic`: the topics (NATS subjects) whose messages invoke the function, split on "," with each
  name trimmed and empty names dropped (connector-sdk v0.6.7, types/function_list_builder.go:
  buildServiceMap / appendServiceMap; nats-connector 0.3.0 builds on that release). A message
  invokes the functions whose topic equals its subject exactly (types/topic_map.go: Match), so
  a wildcard never matches anything there: it is refused here.
- `topic: cron-function` with `schedule: "<cron expression>"`: invoked on that schedule
  (cron-connector 0.7.0, types/cron_function.go: ToCronFunction needs topic == "cron-function"
  exactly, and a schedule its parser accepts: cron.py).

The connectors skip a function whose annotations they cannot use, with a line in their log; the
local platform refuses it at deploy instead (`check`), with the reason, so it is seen at once.
"""

from __future__ import annotations

import re

from sai.local.triggers import cron

TOPIC, SCHEDULE = "topic", "schedule"
CRON_TOPIC = "cron-function"  # cron-connector 0.7.0 main.go: const topic
DELIMITER = ","  # nats-connector 0.3.0 config/config.go: topic_delimiter default
# A plain NATS subject: tokens separated by "." (NATS also allows other characters in a token, but
# "*" and ">" are wildcards, "$" starts its system subjects, and whitespace cannot be sent).
_SUBJECT = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


class AnnotationError(ValueError):
    """A trigger annotation that no connector could use; the message says why."""


def topics(annotations: dict[str, str]) -> list[str]:
    """The message topics a function subscribes to (not the cron topic), in annotation order."""
    names = [t.strip() for t in annotations.get(TOPIC, "").split(DELIMITER)]
    return [t for t in dict.fromkeys(names) if t and t != CRON_TOPIC]


def schedule(annotations: dict[str, str]) -> str | None:
    """The cron expression of a cron function, None for any other function."""
    return annotations.get(SCHEDULE) if annotations.get(TOPIC, "").strip() == CRON_TOPIC else None


def check_annotations(annotations: dict[str, str]) -> None:
    """Raise AnnotationError when `topic`/`schedule` are present but unusable."""
    if TOPIC in annotations:
        raw = annotations[TOPIC]
        names = [t.strip() for t in raw.split(DELIMITER)]
        if not any(names):
            raise AnnotationError(f"annotation topic={raw!r} names no topic; give one or more, comma-separated")
        for name in filter(None, names):
            if not _SUBJECT.match(name):
                raise AnnotationError(
                    f"topic {name!r} is not a NATS subject to subscribe to exactly: "
                    "letters, digits, '-', '_' in tokens separated by '.', no spaces, no '*' or '>' wildcards"
                )
        if CRON_TOPIC in names and raw.strip() != CRON_TOPIC:
            raise AnnotationError(
                f"topic={raw!r}: a cron function's topic must be exactly {CRON_TOPIC!r} "
                "(cron-connector ignores any other), so it cannot take message topics too"
            )
    if raw_schedule := annotations.get(SCHEDULE):
        if annotations.get(TOPIC, "").strip() != CRON_TOPIC:
            raise AnnotationError(f"schedule={raw_schedule!r} needs topic={CRON_TOPIC!r}; cron-connector ignores it otherwise")
    if annotations.get(TOPIC, "").strip() == CRON_TOPIC:
        if not annotations.get(SCHEDULE, "").strip():
            raise AnnotationError(f"topic={CRON_TOPIC!r} needs a schedule annotation, e.g. schedule='0 3 * * *'")
        try:
            cron.parse(annotations[SCHEDULE])
        except cron.CronError as exc:
            raise AnnotationError(f"schedule={annotations[SCHEDULE]!r}: {exc}") from None
