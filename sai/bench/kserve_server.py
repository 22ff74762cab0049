"""The memory baseline of `sai bench startup`: a plain KServe ModelServer (the `kserve` SDK the
cluster extra installs, v0.20) serving image_classifier's ONNX file with onnxruntime in-process,
the way a KServe custom predictor does it, with the functions' own decode and preprocessing
(sai/bench/plain_server.py's classifier). KServe's v1 protocol:

  POST /v1/models/image_classifier:predict  {"instances": [{"image": {"b64": "<JPEG bytes>"}}]}

Run: python -m sai.bench.kserve_server --port 8124
"""

from __future__ import annotations

import argparse
import base64

from sai.bench.plain_server import classifier

NAME = "image_classifier"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    import kserve  # 4 s of imports: only here

    class ImageClassifier(kserve.Model):
        def __init__(self):
            super().__init__(NAME)
            self.classify = classifier()
            self.ready = True

        def predict(self, payload, headers=None):
            return {"predictions": [self.classify(base64.b64decode(i["image"]["b64"])) for i in payload["instances"]]}

    kserve.ModelServer(http_port=args.port, enable_grpc=False, workers=1).start([ImageClassifier()])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
