"""The one reader of Triton model configs (config.pbtxt and configs/*.pbtxt): protobuf text format
parsed with Triton's own ModelConfig message, returned as the JSON Triton serves for
`GET /v2/models/<m>/config` (what the functions read at run time). Configs that `sai models add`
writes are built as that message too (`messages()`, `config_text`), never by string formatting,
so a tensor name from a user's graph stays a quoted string whatever it holds."""

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


def messages():
    """The module of Triton's config messages (ModelConfig, ModelInput, DataType ...)."""
    return _model_config_pb2()


def config_text(config, comments: list[str]) -> str:
    """A ModelConfig message as config.pbtxt text, after `comments` (one `#` line each)."""
    from google.protobuf import text_format

    return "".join(f"# {line}\n" for line in comments) + text_format.MessageToString(config)


def read_config(path: pathlib.Path) -> dict:
    """A config.pbtxt as a dict (proto field names, as Triton's config endpoint gives them)."""
    from google.protobuf import json_format, text_format

    msg = text_format.Parse(pathlib.Path(path).read_text(), _model_config_pb2().ModelConfig())
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)
