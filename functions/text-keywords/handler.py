"""text-keywords: KeyBERT-style keyword extraction on the shared Triton text_encoder.

Input (POST): {"text": "...", "top_n": 5, "diversity": 0.5, "ngram_max": 3} or a text/plain body
(parameters then from the query string: ?top_n=5&diversity=0.5&ngram_max=3).
  top_n      keywords to return, 1..30 (default 5)
  diversity  0 = ranked by similarity only .. 1 = as different from each other as possible (default 0.5)
  ngram_max  longest candidate phrase in words, 1..3 (default 3)
Output: {"model", "model_version", "keywords": [{"keyword", "score"}], "candidates", "tokens", "truncated"}
  keywords come in MMR pick order (the first is the phrase closest to the text); score = cosine
  similarity of the phrase to the whole text; tokens/truncated describe the text.
Candidates (1..ngram_max-word phrases without stop words, see keywords.py) and the text are embedded
with the same encoder; Maximal Marginal Relevance picks the keywords.
"""

from .common import request, text, text_request
from .common.errors import FunctionError, handler_errors, json_response
from .common.settings import setting
from .keywords import candidates, mmr

candidate_limit = setting("MAX_CANDIDATES", int, 128, low=1)  # candidate phrases embedded per text


@handler_errors
def handle(event, context):
    req = text_request.read_texts(event, allow_batch=False)
    opts = req.options
    top_n = request.int_param(event, "top_n", 5, 1, 30, override=opts.get("top_n"))
    ngram_max = request.int_param(event, "ngram_max", 3, 1, 3, override=opts.get("ngram_max"))
    diversity = request.number_param(event, "diversity", 0.5, 0.0, 1.0, override=opts.get("diversity"), kind=float)
    document = req.texts[0]
    phrases = candidates(document, ngram_max, candidate_limit())
    if not phrases:
        raise FunctionError(
            422, "no_candidates", "the text has no words to extract keywords from (only stop words, digits or symbols)"
        )
    # Two calls: the long text alone, then the short phrases together (padding them to the
    # text's length would multiply the encoder's work).
    doc, tok, version = text.embed([document])
    cand, _, _ = text.embed(phrases)
    picks = mmr(doc[0], cand, top_n, diversity)
    return json_response(
        {
            "model": text.encoder_model(),
            "model_version": version,
            "keywords": [{"keyword": phrases[i], "score": round(score, 4)} for i, score in picks],
            "candidates": len(phrases),
            "tokens": tok.tokens[0],
            "truncated": tok.truncated[0],
        }
    )
