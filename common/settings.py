"""The one reader of the functions' settings (environment variables), modelled on Starlette's
`Config(key, cast, default)`.

Each setting is declared once, next to the code that uses it, with its type, default and bounds:

    MAX_IMAGE_PIXELS = setting("MAX_IMAGE_PIXELS", int, 50_000_000, low=1)
    ...
    limit = MAX_IMAGE_PIXELS()

A value is read from the environment on every use (operators and tests may change it in place) and
is always validated the same way: unset (or blank, for numbers) gives the default; anything else
must parse and lie within the bounds, or `SettingError` says what is wrong, e.g.
"MAX_IMAGE_PIXELS='abc' is not an integer". `check()` validates every declared setting at once:
each function runs it at start-up (common.errors.handler_errors), so a bad value stops the process
with that message instead of failing requests later. docs/configuration.md lists them all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_NOUNS = {int: "an integer", float: "a number"}


class SettingError(ValueError):
    """A setting's value does not parse or is out of range."""


@dataclass(frozen=True)
class Setting:
    name: str
    cast: type  # int, float or str
    default: object
    low: float | None = None
    high: float | None = None
    blank_is_unset: bool = True  # for str settings whose empty value means something (a prefix)

    def __call__(self, env: Mapping[str, str] | None = None) -> Any:
        raw = (os.environ if env is None else env).get(self.name)
        if raw is None or (self.blank_is_unset and not raw.strip()):
            return self.default
        if self.cast is str:
            return raw
        try:
            value = self.cast(raw.strip())
        except ValueError:
            raise SettingError(f"{self.name}={raw!r} is not {_NOUNS[self.cast]}") from None
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            bounds = f"from {self.low} to {self.high}" if self.high is not None else f"at least {self.low}"
            raise SettingError(f"{self.name}={raw!r} is out of range (it must be {bounds})")
        return value


_DECLARED: list[Setting] = []


def setting(
    name: str, cast: type, default: Any, *, low: float | None = None, high: float | None = None, blank_is_unset: bool = True
) -> Setting:
    """Declare a setting; call the result to read it."""
    declared = Setting(name, cast, default, low, high, blank_is_unset)
    _DECLARED.append(declared)
    return declared


def declared() -> list[Setting]:
    return list(_DECLARED)


def check(env: Mapping[str, str] | None = None) -> None:
    """Validate every declared setting; one SettingError naming every bad value."""
    problems = []
    for s in _DECLARED:
        try:
            s(env)
        except SettingError as exc:
            problems.append(str(exc))
    if problems:
        raise SettingError("; ".join(dict.fromkeys(problems)))
