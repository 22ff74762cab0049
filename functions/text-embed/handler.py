"""text-embed: sentence embeddings (all-MiniLM-L6-v2, 384-d) from the shared Triton text_encoder.

Input (POST): {"text": "..."} | {"texts": [...]} | a text/plain body; optional "normalize"
(default true: unit-length vectors, cosine similarity = dot product; false: the mean-pooled
vectors before normalisation).
Output: {"model", "model_version", "dim": 384, "normalized", "embeddings": [[...], ...],
         "tokens": [...], "truncated": [...]}  (one row per text, in order; one Triton call for
a batch within the encoder's max_batch_size).
"""

import numpy as np

from .common import text, text_request
from .common.errors import handler_errors, json_response


@handler_errors
def handle(event, context):
    req = text_request.read_texts(event)
    normalize = text_request.bool_option(req.options, "normalize", True)
    vectors, tok, version = text.embed(req.texts, normalize=normalize)
    return json_response(
        {
            "model": text.encoder_model(),
            "model_version": version,
            "dim": int(vectors.shape[1]),
            "normalized": normalize,
            # 7 decimals: float32 carries about 7 significant digits; halves the JSON size.
            "embeddings": np.round(vectors.astype(np.float64), 7).tolist(),
            "tokens": tok.tokens,
            "truncated": tok.truncated,
        }
    )
