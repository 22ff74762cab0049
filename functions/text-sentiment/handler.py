"""text-sentiment: English text in, positive/negative with probabilities out.

Input (POST): {"text": "..."} | {"texts": ["...", ...]} (batch, one Triton call) | a text/plain body.
Output for one text:  {"model", "model_version", "label", "score", "scores": {"negative", "positive"},
                       "tokens", "truncated"}
Output for "texts":   {"model", "model_version", "results": [{"label", "score", "scores", "tokens", "truncated"}]}
Runs the Triton ensemble `text_sentiment` (shared text_encoder -> sentiment_head), so the
encoder is loaded once for all text functions. Besides the token ids it sends each text's VADER
lexicon score (`lexicon`), one of the head's inputs (docs/sentiment.md).
"""

from .common import lexicon, text, text_request
from .common.errors import handler_errors, json_response
from .common.settings import setting

LABELS = ("negative", "positive")  # the order of sentiment_head's probabilities (labels.txt)


model_name = setting("MODEL_NAME", str, "text_sentiment")  # the Triton ensemble to call


@handler_errors
def handle(event, context):
    req = text_request.read_texts(event)
    scores = lexicon.lexicon_scores(req.texts)
    out, tok, version = text.run_batched(model_name(), req.texts, ["probabilities"], extra_inputs={"lexicon": scores})
    results = []
    for probs, n_tokens, truncated in zip(out["probabilities"].tolist(), tok.tokens, tok.truncated):
        best = max(range(len(LABELS)), key=probs.__getitem__)
        results.append(
            {
                "label": LABELS[best],
                "score": round(probs[best], 6),
                "scores": {label: round(p, 6) for label, p in zip(LABELS, probs)},
                "tokens": n_tokens,
                "truncated": truncated,
            }
        )
    head = {"model": model_name(), "model_version": version}
    return json_response({**head, "results": results} if req.batch else {**head, **results[0]})
