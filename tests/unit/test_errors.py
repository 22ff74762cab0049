"""One error shape and one code list for the functions and the gateway."""

from __future__ import annotations

import ast
import json

import pytest
from helpers import ROOT, Event

import common.errors
from common.errors import (
    ERROR_CODES,
    FunctionError,
    ServiceError,
    TritonUnavailable,
    error_document,
    error_response,
    handler_errors,
)
from sai.local.admission import Busy
from sai.local.deployments import DeployError
from sai.local.responses import HOP_BY_HOP, GatewayError, error_parts, parts
from sai.local.secrets_store import SecretError

TREE = {c.__name__: c for c in (ServiceError, FunctionError, TritonUnavailable, GatewayError, Busy, DeployError, SecretError)}


def _codes_in_source() -> set[str]:
    """Every string literal passed as an error code: an error of the tree (FunctionError(status,
    code, ...), DeployError...), RecordError(code, ...), error_document(code, ...), the gateway's
    error(status, code, ...)."""
    calls = {name: 1 for name in TREE} | {
        "RecordError": 0,
        "error_document": 0,
        "error": 1,
        "error_response": 1,
        "error_parts": 1,
    }
    found = set()
    files = [*(ROOT / "common").glob("*.py"), *(ROOT / "functions").glob("*/*.py"), *(ROOT / "sai" / "local").glob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", None))
                pos = calls.get(name)
                if pos is not None and len(node.args) > pos and isinstance(node.args[pos], ast.Constant):
                    if isinstance(node.args[pos].value, str):
                        found.add(node.args[pos].value)
    return found


def test_every_code_used_is_in_the_one_list():
    used = _codes_in_source()
    assert {"internal_error", "function_not_found", "bad_record", "model_error", "queue_full"} <= used
    assert used <= set(ERROR_CODES), sorted(used - set(ERROR_CODES))


def test_one_exception_tree():
    """Every error class answered as JSON derives from ServiceError, and the map at the top of
    common/errors.py names each one with its parent."""
    assert all(issubclass(c, ServiceError) for c in TREE.values())
    doc = common.errors.__doc__
    for name, cls in TREE.items():
        if cls is not ServiceError:
            line = next(x for x in doc.splitlines() if f" {name} " in x)
            parent_line = next(x for x in doc.splitlines() if f" {cls.__base__.__name__} " in x)
            assert line.index(name) > parent_line.index(cls.__base__.__name__), name
    busy = Busy(429, "too_many_requests", "full")
    status, headers, body = parts(busy)
    assert (status, headers["Retry-After"], json.loads(body)["error"]["code"]) == (429, "1", "too_many_requests")
    assert error_response(DeployError(404, "function_not_found", "no echo"))["statusCode"] == 404


def test_unknown_codes_are_refused():
    with pytest.raises(ValueError):
        error_document("internal", "drifted spelling")


def test_function_and_gateway_errors_have_the_same_shape():
    res = error_response(TritonUnavailable("down", retry_after=7))
    assert res["statusCode"] == 503 and res["headers"]["Retry-After"] == "7"
    status, headers, body = error_parts(503, "function_unavailable", "not running", retry_after=2)
    assert (status, headers["Retry-After"]) == (503, "2")
    assert set(json.loads(body)) == set(res["body"]) == {"error"}
    assert set(json.loads(body)["error"]) == set(res["body"]["error"]) == {"code", "message"}


def test_hop_by_hop_headers_are_one_list():
    assert {"connection", "transfer-encoding", "host", "content-length", "expect"} <= HOP_BY_HOP


def test_handler_errors_logs_the_call_id(caplog):
    @handler_errors
    def handle(event, context):
        if event.body == b"boom":
            raise KeyError("secret internals")
        raise FunctionError(503, "model_server_unavailable", "down")

    caplog.set_level("INFO")
    res = handle(Event(b"boom", headers={"X-Call-Id": "call-123"}), None)
    assert res["statusCode"] == 500 and "secret" not in str(res["body"])
    res = handle(Event(b"x", headers={"X-Call-Id": "call-456"}), None)
    assert res["statusCode"] == 503
    lines = [r.getMessage() for r in caplog.records]
    assert any("call call-123: unhandled error" in m for m in lines)
    assert any("call call-123: POST / -> 500" in m for m in lines)
    assert any("call call-456: model_server_unavailable: down" in m for m in lines)
