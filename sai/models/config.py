"""The one reader of Triton model configs (config.pbtxt and configs/*.pbtxt): protobuf text format
parsed with Triton's own ModelConfig message, returned as the JSON Triton serves for
`GET /v2/models/<m>/config` (what the functions read at run time)."""

from __future__ import annotations

import functools
import importlib.util
import pathlib


@functools.cache
def _model_config_pb2():
    """tritonclient's model_config_pb2, loaded on its own. Importing it as
    `tritonclient.grpc.model_config_pb2` runs the package's __init__, which registers Triton's
    gRPC service protos; the kserve SDK (`sai cluster`) registers its v2 protocol under the same
    names, and protobuf refuses both in one process ("duplicate symbol
    'inference.ServerLiveRequest'"). ModelConfig itself clashes with nothing."""
    root = pathlib.Path(importlib.util.find_spec("tritonclient").submodule_search_locations[0])
    spec = importlib.util.spec_from_file_location("sai_triton_model_config_pb2", root / "grpc" / "model_config_pb2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_config(path: pathlib.Path) -> dict:
    """A config.pbtxt as a dict (proto field names, as Triton's config endpoint gives them)."""
    from google.protobuf import json_format, text_format

    msg = text_format.Parse(pathlib.Path(path).read_text(), _model_config_pb2().ModelConfig())
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)
