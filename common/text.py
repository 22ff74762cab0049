"""The shared MiniLM `text_encoder` on Triton, for text-sentiment, text-embed and text-keywords:
texts in, model outputs out, in as few Triton calls as the model's max_batch_size allows.
Reading requests is in text_request.py, tokenising in tokens.py, the lexicon score in lexicon.py.
"""

from __future__ import annotations

import numpy as np

from . import triton
from .settings import setting
from .tokens import Tokenized, tokenize

encoder_model = setting("ENCODER_MODEL", str, "text_encoder")  # Triton model name of the encoder


def max_batch(model: str) -> int:
    """The model's max_batch_size from Triton (cached): larger requests are split to fit it."""
    return int(triton.model_config(model).get("max_batch_size") or 1)


def run_batched(
    model: str,
    texts: list[str],
    outputs: list[str],
    max_length: int | None = None,
    extra_inputs: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], Tokenized, str]:
    """Tokenise and infer `texts` on `model` in as few calls as max_batch_size allows (one for a
    request within the limit). `extra_inputs` are further per-text tensors (row i belongs to text i).
    Returns ({output: array in input order}, Tokenized, model_version)."""
    limit = max_batch(model)
    order = list(range(len(texts)))
    if len(texts) > limit:
        # Length-sorted chunks pad far less than arrival order.
        order.sort(key=lambda i: len(texts[i]))
    results: dict[str, np.ndarray] = {}
    tokens, truncated = [0] * len(texts), [False] * len(texts)
    version = ""
    for start in range(0, len(order), limit):
        idx = order[start : start + limit]
        tok = tokenize([texts[i] for i in idx], max_length)
        feeds = {**tok.feeds, **{name: rows[idx] for name, rows in (extra_inputs or {}).items()}}
        out = triton.infer(model, feeds, outputs)
        version = out.model_version
        for name in outputs:
            if name not in results:
                results[name] = np.empty((len(texts),) + out[name].shape[1:], out[name].dtype)
            results[name][idx] = out[name]
        for j, i in enumerate(idx):
            tokens[i], truncated[i] = tok.tokens[j], tok.truncated[j]
    return results, Tokenized({}, tokens, truncated), version


def embed(texts: list[str], normalize: bool = True, max_length: int | None = None) -> tuple[np.ndarray, Tokenized, str]:
    """Sentence embeddings from the shared encoder: (array [n, 384], Tokenized, model_version)."""
    name = "embeddings" if normalize else "mean_pooled"
    out, tok, version = run_batched(encoder_model(), texts, [name], max_length)
    return out[name], tok, version
