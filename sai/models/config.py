"""The one reader of Triton model configs (config.pbtxt and configs/*.pbtxt): protobuf text format
parsed with Triton's own ModelConfig message, returned as the JSON Triton serves for
`GET /v2/models/<m>/config` (what the functions read at run time)."""

from __future__ import annotations

import pathlib


def read_config(path: pathlib.Path) -> dict:
    """A config.pbtxt as a dict (proto field names, as Triton's config endpoint gives them)."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    msg = text_format.Parse(pathlib.Path(path).read_text(), model_config_pb2.ModelConfig())
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)
