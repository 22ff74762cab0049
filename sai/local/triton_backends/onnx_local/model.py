"""`onnx_local`: a Python-based Triton backend that serves `<version>/model.onnx` with onnxruntime.

The tritonserver binary in the `nvidia-pytriton` wheel has only the Python backend, not the native
onnxruntime one. Models select this backend in `configs/local.pbtxt` (`backend: "onnx_local"`), so
the very same ONNX files the GPU config serves natively run on the embedded platform. Triton finds
it as `<backend-directory>/onnx_local/model.py` and runs it on its Python backend stub.

Dynamic batching hands one `execute` call several requests; those whose inputs have the same
per-item shape are concatenated and run as one onnxruntime batch (text requests of different
lengths run as separate groups).
"""

import json
import os
from collections import defaultdict
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def providers(params: dict[str, str], args: dict[str, str]) -> list:
    """onnxruntime providers from the config's `execution_provider` (cpu, the default, or cuda:
    the GPU variant sai/bench/gpu.sh writes, run with onnxruntime-gpu in the stub packages)."""
    if params.get("execution_provider", "cpu") != "cuda":
        return ["CPUExecutionProvider"]
    if hasattr(ort, "preload_dlls"):  # onnxruntime-gpu >= 1.21: CUDA/cuDNN from the nvidia-* wheels
        ort.preload_dlls()
    device = int(args.get("model_instance_device_id", "0") or 0)
    return [("CUDAExecutionProvider", {"device_id": device}), "CPUExecutionProvider"]


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")

        opts = ort.SessionOptions()
        # Functions, gateway and Triton share a few cores: let the config cap onnxruntime's threads.
        opts.intra_op_num_threads = int(params.get("intra_op_threads", "0"))
        opts.inter_op_num_threads = 1
        # Spinning threads burn the cores that the functions and the gateway need.
        opts.add_session_config_entry("session.intra_op.allow_spinning", params.get("allow_spinning", "0"))
        self.session = ort.InferenceSession(path, opts, providers=providers(params, args))
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]
        self.batched = int(config.get("max_batch_size", 0)) > 0

    def execute(self, requests: list[Any]) -> list[Any]:
        feeds = [{n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.input_names} for r in requests]
        responses: list[Any] = [None] * len(requests)
        wanted = [r.requested_output_names() or self.output_names for r in requests]
        for indices in self._groups(feeds):
            # Fetch only what the group asked for (text_encoder's token states are large and
            # only the sentiment ensemble wants them), in the config's order.
            names = [n for n in self.output_names if any(n in wanted[i] for i in indices)]
            try:
                outputs = self._run([feeds[i] for i in indices], names)
            except Exception as exc:  # noqa: BLE001 - a bad tensor fails its own requests, not the server
                error = pb_utils.TritonError(f"onnxruntime: {exc}")
                for i in indices:
                    responses[i] = pb_utils.InferenceResponse(error=error)
                continue
            for i, out in zip(indices, outputs):
                tensors = [pb_utils.Tensor(n, out[n]) for n in wanted[i]]
                responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses

    def _groups(self, feeds: list[dict[str, np.ndarray]]) -> list[list[int]]:
        """Indices of requests that can share one onnxruntime call."""
        if not self.batched:
            return [[i] for i in range(len(feeds))]
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, feed in enumerate(feeds):
            groups[tuple((n, a.shape[1:], a.dtype.str) for n, a in feed.items())].append(i)
        return list(groups.values())

    def _run(self, feeds: list[dict[str, np.ndarray]], names: list[str]) -> list[dict[str, np.ndarray]]:
        """Run one group for the output `names`; return each request's outputs as {name: array}."""
        if len(feeds) == 1:
            values = self.session.run(names, feeds[0])
            return [dict(zip(names, values))]
        sizes = [len(next(iter(f.values()))) for f in feeds]
        merged = {n: np.concatenate([f[n] for f in feeds]) for n in self.input_names}
        values = self.session.run(names, merged)
        bounds = np.cumsum([0] + sizes)
        return [{n: v[bounds[k] : bounds[k + 1]] for n, v in zip(names, values)} for k in range(len(feeds))]
