"""sai reload's gRPC model-control request, encoded by hand (sai/local/model_control.py says why), is
byte for byte the message tritonclient's own protos build. tritonclient.grpc is imported in a
process of its own: in this one it would clash with the kserve SDK's protos."""

from __future__ import annotations

import json
import subprocess
import sys

from sai.local.model_control import model_request

NAMES = ["m", "image_classifier", "x" * 200, "modèle-ü"]
TRITONCLIENT = """
import json, sys
from tritonclient.grpc import service_pb2 as s
names = json.loads(sys.argv[1])
print(json.dumps([[s.RepositoryModelLoadRequest(model_name=n).SerializeToString().hex(),
                   s.RepositoryModelUnloadRequest(model_name=n).SerializeToString().hex()] for n in names]))
"""


def test_the_request_is_tritons_message():
    run = subprocess.run([sys.executable, "-c", TRITONCLIENT, json.dumps(NAMES)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [[model_request(n).hex()] * 2 for n in NAMES]
