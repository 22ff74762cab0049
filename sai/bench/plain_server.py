"""The simplest alternative to the platform, for `sai bench image --compare`: one aiohttp process
that serves image_classifier's ONNX file with onnxruntime in-process, with the functions' own
decode and preprocessing (common/imaging.py) and the onnxruntime settings of the model's local
Triton config. POST image bytes to /classify; the answer is the top 5 as image-classify gives them.

Decoding and inference run in a thread pool (both release the GIL), one thread per concurrent
request up to --threads, so the single process uses both cores as the platform does.

Run: python -m sai.bench.plain_server --port 8123
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures

import numpy as np
from aiohttp import web

from common import imaging
from sai import paths
from sai.bench.image import local_config, onnx_session


def classifier():
    """image bytes -> image-classify's top 5, in this process (also sai/bench/kserve_server.py's)."""
    repo = paths.model_repository() / "image_classifier"
    spec = imaging.ImageSpec(local_config(repo))
    session = onnx_session(repo)
    labels = (repo / "labels.txt").read_text().splitlines()

    def classify(data: bytes) -> dict:
        img = imaging.decode(data, min_short_side=spec.short_side)
        (probs,) = session.run(["probabilities"], {spec.input: spec.tensor(img)[np.newaxis]})
        top = np.argsort(probs[0])[::-1][:5]
        return {"predictions": [{"label": labels[i], "class_id": int(i), "score": round(float(probs[0][i]), 6)} for i in top]}

    return classify


def make_app(threads: int) -> web.Application:
    classify = classifier()
    pool = concurrent.futures.ThreadPoolExecutor(threads)

    async def handle(request: web.Request) -> web.Response:
        data = await request.read()
        return web.json_response(await asyncio.get_running_loop().run_in_executor(pool, classify, data))

    app = web.Application(client_max_size=32 * 1024 * 1024)
    app.router.add_post("/classify", handle)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8, help="decode + inference threads (default: %(default)s)")
    args = parser.parse_args(argv)
    web.run_app(make_app(args.threads), host="127.0.0.1", port=args.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
