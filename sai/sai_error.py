"""The one exception the CLI reports without a traceback."""

from __future__ import annotations


class SaiError(Exception):
    """An expected failure: printed without a traceback, with a meaningful exit code."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
