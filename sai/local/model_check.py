"""One inference on zeros, shaped and typed from a model's Triton config: how `sai models add` and
`sai reload` prove that a model Triton loaded also runs (the Python backend accepts a config whose
input names do not match the graph at load time, and fails only on the first request)."""

from __future__ import annotations

import math

import numpy as np

NUMPY = {
    "TYPE_FP32": np.float32,
    "TYPE_FP16": np.float16,
    "TYPE_FP64": np.float64,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_BOOL": np.bool_,
}
# The most the check allocates for one request's inputs. A config may declare any dims (Triton
# loads [3, 100000, 100000] without complaint, and numpy would try to allocate 112 GiB): past this
# the model is refused before anything is allocated. 8x the gateway's 32 MiB body limit.
MAX_CHECK_BYTES = 256 * 1024 * 1024
# Bytes per element where numpy has no dtype of its own (a string zero is b"0").
ITEMSIZE = {"TYPE_STRING": 1, "TYPE_BF16": 2}


def zeros(dtype: str, shape: list[int]) -> np.ndarray:
    """A zero tensor of a config's data type, as tritonclient sends it: every type is checked,
    strings too (the Python backend fails on a wrong input only at the first request)."""
    if dtype == "TYPE_STRING":
        return np.full(shape, b"0", object)  # "0": a number where one is parsed, a text where one is read
    if dtype == "TYPE_BF16":
        import ml_dtypes  # what tritonclient takes for BF16 (an onnx dependency)

        return np.zeros(shape, ml_dtypes.bfloat16)
    if dtype not in NUMPY:
        raise RuntimeError(f"input data type {dtype} has no zeros to send")
    return np.zeros(shape, NUMPY[dtype])


def infer_zeros(url: str, model: str, config: dict, timeout: float = 120.0) -> dict[str, list[int]]:
    """Run `model` once on zeros (batch 1; variable dims 1); returns each output's shape. Raises
    RuntimeError with Triton's message when it fails, or before allocating anything when the
    inputs would take more than MAX_CHECK_BYTES. `config` is read_config()'s dict."""
    import tritonclient.http as httpclient

    batched = int(config.get("max_batch_size", 0)) > 0
    tensors, total = [], 0
    for inp in config.get("input", []):
        dtype = inp.get("data_type", "TYPE_FP32")
        shape = ([1] if batched else []) + [max(int(d), 1) for d in inp.get("dims", [])]
        total += math.prod(shape) * ITEMSIZE.get(dtype, np.dtype(NUMPY.get(dtype, np.uint8)).itemsize)
        if total > MAX_CHECK_BYTES:
            raise RuntimeError(
                f"input {inp['name']!r} {shape} {dtype[5:]} makes the inputs {total / 2**30:.1f} GiB per request; "
                f"refused (at most {MAX_CHECK_BYTES >> 20} MiB)"
            )
        tensor = httpclient.InferInput(inp["name"], shape, "BYTES" if dtype == "TYPE_STRING" else dtype[5:])
        tensor.set_data_from_numpy(zeros(dtype, shape), binary_data=True)
        tensors.append(tensor)
    client = httpclient.InferenceServerClient(url, network_timeout=timeout)
    try:
        result = client.infer(model, tensors)
        return {o["name"]: list(result.as_numpy(o["name"]).shape) for o in config.get("output", [])}
    except Exception as exc:  # noqa: BLE001 - tritonclient's errors carry Triton's message
        raise RuntimeError(f"inference on zeros failed: {exc}") from exc
    finally:
        client.close()
