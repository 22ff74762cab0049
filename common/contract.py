"""The python3-http-debian template's contract as types: what `handle(event, context)` receives
(index.py's Event and Context, openfaas/python-flask-template; sai/local/function_runner.py serves
it the same way) and what it returns. For type checking and for readers; nothing here runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol


class Event(Protocol):
    body: bytes  # the raw request body
    headers: Mapping[str, str]  # Flask's request.headers: case-insensitive
    method: str
    query: Mapping[str, str]  # the query string's first value per name
    path: str  # the path after /function/<name>


class Context(Protocol):
    hostname: str  # the pod's (locally: the replica's) name


# A dict with statusCode, body (a dict is sent as JSON) and headers; or bytes/str as the body.
Response = Any
Handler = Callable[[Event, Context], Response]
Headers = Mapping[str, str]
