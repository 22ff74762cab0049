"""text-entities: English text in, named entities with character offsets out.

Input (POST): {"text": "..."} | {"texts": ["...", ...]} | a text/plain body.
Output for one text:  {"model", "model_version", "entities": [{"text", "label", "start", "end", "score"}],
                       "tokens", "truncated"}
Output for "texts":   {"model", "model_version", "results": [{"entities", "tokens", "truncated"}]}
`start`/`end` are offsets into the text as sent (Python string indices, so text[start:end] == entity
text), also where the tokenizer normalised it (accents, case). Texts longer than the encoder's window
run in overlapping windows merged back together, so nothing is truncated (`truncated` is always false).
Runs the Triton ensemble `text_entities` (shared text_encoder -> entity_head); labels are spaCy's
OntoNotes set the head was trained on (docs/entities.md).
"""

from .common import entities, text, text_request, triton
from .common.errors import handler_errors, json_response
from .common.settings import setting

model_name = setting("MODEL_NAME", str, "text_entities")  # the Triton ensemble to call


def _infer(feeds):
    out = triton.infer(model_name(), feeds, ["probabilities"])
    return out["probabilities"], out.model_version


@handler_errors
def handle(event, context):
    req = text_request.read_texts(event)
    found, n_tokens, version = entities.extract(req.texts, _infer, text.max_batch(model_name()))
    results = [{"entities": e, "tokens": n, "truncated": False} for e, n in zip(found, n_tokens)]
    head = {"model": model_name(), "model_version": version}
    return json_response({**head, "results": results} if req.batch else {**head, **results[0]})
