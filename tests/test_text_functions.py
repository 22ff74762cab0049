"""text-sentiment, text-embed and text-keywords end to end: real gateway, real function processes,
real tritonserver serving the text_encoder, sentiment_head and the text_sentiment ensemble."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parents[1]
POSITIVE = [
    "I absolutely loved this movie, the acting was brilliant and the story moving.",
    "Fantastic service, friendly staff, I will definitely come back!",
    "This phone is great: fast, light and the battery lasts for days.",
]
NEGATIVE = [
    "This was the worst film I have ever seen, a boring waste of two hours.",
    "Terrible customer support, rude staff and my order never arrived.",
    "The laptop broke after a week and the screen is awful.",
]


@pytest.fixture(scope="module")
def fn(gateway):
    def call(name: str, json=None, data=None, content_type=None, params=None, method="POST"):
        headers = {"Content-Type": content_type} if content_type else {}
        return requests.request(
            method, f"{gateway}/function/{name}", json=json, data=data, headers=headers, params=params, timeout=60
        )

    return call


def cosine(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---------------------------------------------------------------- text-sentiment


def test_sentiment_clear_sentences_batch(fn):
    r = fn("text-sentiment", json={"texts": POSITIVE + NEGATIVE})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "text_sentiment"
    labels = [x["label"] for x in body["results"]]
    assert labels == ["positive"] * len(POSITIVE) + ["negative"] * len(NEGATIVE)
    for x in body["results"]:
        assert x["score"] == max(x["scores"].values()) > 0.8
        assert sum(x["scores"].values()) == pytest.approx(1, abs=1e-4)
        assert x["truncated"] is False and x["tokens"] > 5


def test_sentiment_single_text_and_plain_body_agree(fn):
    one = fn("text-sentiment", json={"text": NEGATIVE[0]}).json()
    plain = fn("text-sentiment", data=NEGATIVE[0].encode(), content_type="text/plain").json()
    assert one["label"] == plain["label"] == "negative"
    assert one["scores"]["negative"] == pytest.approx(plain["scores"]["negative"], abs=1e-5)
    assert "results" not in one


def test_curl_style_bodies(fn, gateway):
    """`curl -d 'text' URL` and `curl -d '{"text": ...}' URL` label the body form-urlencoded."""
    import subprocess

    def curl(data):
        out = subprocess.run(
            ["curl", "-sS", "-d", data, f"{gateway}/function/text-sentiment"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        return json.loads(out)

    assert curl(POSITIVE[0])["label"] == "positive"
    assert curl(json.dumps({"text": NEGATIVE[0]}))["label"] == "negative"


def test_sentiment_matches_the_exported_graphs_in_process(fn):
    """Through the gateway, the function's lexicon score and the ensemble (encoder token states ->
    head) give what the exported graphs give in-process: the lexicon input is wired end to end."""
    from sai.models import sentiment_head, text_encoder

    texts = ["Twitter from the dentist chair, LOL", "Unisex bathrooms: very pc, but not very practical."]
    remote = [r["scores"]["positive"] for r in fn("text-sentiment", json={"texts": texts}).json()["results"]]
    repo = ROOT / "model_repository"
    states = sentiment_head.Encoder(text_encoder.model_path(repo)).states(texts)
    local = sentiment_head.head_predict(
        repo / "sentiment_head" / "1" / "model.onnx", states, sentiment_head.lexicon_scores(texts)
    )[:, 1]
    assert np.abs(np.array(remote) - local).max() < 1e-4
    # Without the lexicon score (0) the answer changes: the input is not ignored.
    neutral = sentiment_head.head_predict(repo / "sentiment_head" / "1" / "model.onnx", states, np.zeros((2, 1), np.float32))[
        :, 1
    ]
    assert np.abs(neutral - local).max() > 1e-3


def test_sentiment_long_text_is_truncated_and_says_so(fn):
    r = fn("text-sentiment", json={"texts": ["great " * 400, "great"]})
    assert r.status_code == 200
    first, second = r.json()["results"]
    assert first["truncated"] is True and first["tokens"] == 256
    assert second["truncated"] is False and second["tokens"] == 3


# ---------------------------------------------------------------- text-embed


def test_embed_paraphrase_closer_than_unrelated(fn):
    texts = [
        "A man is playing a guitar on stage.",
        "Someone performs music with a guitar in front of an audience.",
        "The quarterly tax report is due next Monday.",
    ]
    r = fn("text-embed", json={"texts": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "text_encoder" and body["dim"] == 384 and body["normalized"] is True
    emb = np.array(body["embeddings"])
    assert emb.shape == (3, 384)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    para, unrelated = cosine(emb[0], emb[1]), cosine(emb[0], emb[2])
    assert para > 0.5 > unrelated + 0.2, (para, unrelated)


def test_embed_batch_equals_single_calls(fn):
    """Padding a short text to the longest in the batch must not change its embedding."""
    texts = ["short", "a considerably longer sentence that forces padding of the short one"]
    batch = np.array(fn("text-embed", json={"texts": texts}).json()["embeddings"])
    for i, t in enumerate(texts):
        single = np.array(fn("text-embed", json={"text": t}).json()["embeddings"][0])
        assert np.abs(batch[i] - single).max() < 1e-5


def test_embed_normalize_false_gives_the_unnormalised_mean(fn):
    text = "Serverless inference scales to zero."
    unit = np.array(fn("text-embed", json={"text": text}).json()["embeddings"][0])
    body = fn("text-embed", json={"text": text, "normalize": False}).json()
    raw = np.array(body["embeddings"][0])
    assert body["normalized"] is False
    assert abs(np.linalg.norm(raw) - 1) > 0.1
    assert np.allclose(raw / np.linalg.norm(raw), unit, atol=1e-5)


def test_embed_matches_in_process_onnxruntime(fn):
    """Triton's answer equals the exported model run in-process (same tokens, same graph)."""
    import onnxruntime as ort

    from common import tokens
    from sai.models import text_encoder

    texts = ["Triton on CPU", "Knative scales the predictor to zero when idle."]
    remote = np.array(fn("text-embed", json={"texts": texts}).json()["embeddings"])
    sess = ort.InferenceSession(str(text_encoder.model_path(ROOT / "model_repository")))
    feeds = tokens.tokenize(texts, tok=text_encoder.load_tokenizer()).feeds
    local = sess.run(["embeddings"], feeds)[0]
    assert np.abs(remote - local).max() < 1e-5


# ---------------------------------------------------------------- text-keywords

PARAGRAPH = (
    "Photosynthesis is the process by which green plants use sunlight to make food. "
    "Chlorophyll in the leaves absorbs light energy, which converts carbon dioxide and water "
    "into glucose and oxygen. Without photosynthesis plants could not grow and the oxygen in "
    "the atmosphere would run out."
)


def test_keywords_of_a_paragraph_name_its_topic(fn):
    r = fn("text-keywords", json={"text": PARAGRAPH, "top_n": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    words = " ".join(k["keyword"] for k in body["keywords"])
    assert len(body["keywords"]) == 5 and body["candidates"] > 20
    assert "photosynthesis" in words
    assert any(w in words for w in ("chlorophyll", "plants", "sunlight", "leaves"))
    assert body["keywords"][0]["score"] == max(k["score"] for k in body["keywords"])


def test_keywords_diversity_changes_the_picks(fn):
    plain = fn(
        "text-keywords", data=PARAGRAPH.encode(), content_type="text/plain", params={"top_n": 6, "diversity": 0, "ngram_max": 3}
    ).json()["keywords"]
    diverse = fn("text-keywords", json={"text": PARAGRAPH, "top_n": 6, "diversity": 0.9}).json()["keywords"]
    scores = [k["score"] for k in plain]
    assert scores == sorted(scores, reverse=True)  # diversity 0 = plain similarity ranking
    assert [k["keyword"] for k in plain] != [k["keyword"] for k in diverse]
    # Many candidates: more than one encoder batch (max_batch_size 64) in a single request.
    long = fn("text-keywords", json={"text": PARAGRAPH * 3 + " " + " ".join(f"term{i}" for i in range(100))})
    assert long.status_code == 200 and long.json()["candidates"] > 64


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", ["text-sentiment", "text-embed", "text-keywords"])
@pytest.mark.parametrize(
    "kwargs, status, code",
    [
        (dict(data=b"\xc3\x28 invalid utf-8", content_type="text/plain"), 400, "invalid_encoding"),
        (dict(data=b"  \n ", content_type="text/plain"), 400, "empty_text"),
        (dict(json={"text": ["not", "a", "string"]}), 400, "invalid_field"),
        (dict(json={"text": "x" * 20001}), 413, "text_too_long"),
        (dict(data=b"{", content_type="application/json"), 400, "invalid_json"),
        (dict(data=b"hello", content_type="image/png"), 415, "unsupported_media_type"),
        (dict(json={"text": "hello"}, method="GET"), 405, "method_not_allowed"),
        # JSON's escape for a lone surrogate: valid JSON, but no UTF-8 text for the tokenizer.
        (dict(data=b'{"text": "bad \\ud800 surrogate"}', content_type="application/json"), 400, "invalid_text"),
        # 100,000 nesting levels: the JSON decoder recurses once per level.
        (dict(data=b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", content_type="application/json"), 400, "invalid_json"),
    ],
)
def test_bad_input_gets_a_json_4xx(fn, name, kwargs, status, code):
    r = fn(name, **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert "Traceback" not in r.text


@pytest.mark.parametrize(
    "name, payload, code",
    [
        ("text-sentiment", {"texts": ["x"] * 33}, "too_many_texts"),
        ("text-embed", {"texts": ["ok", 5]}, "invalid_field"),
        ("text-embed", {"text": "ok", "normalize": "no"}, "invalid_parameter"),
        ("text-keywords", {"texts": ["one", "two"]}, "invalid_field"),
        ("text-keywords", {"text": "fine words here", "top_n": 0}, "invalid_parameter"),
        ("text-keywords", {"text": "fine words here", "diversity": -0.1}, "invalid_parameter"),
        ("text-keywords", {"text": "fine words here", "ngram_max": 4}, "invalid_parameter"),
        ("text-keywords", {"text": "it is what it is, 42!"}, "no_candidates"),
    ],
)
def test_bad_parameters(fn, name, payload, code):
    r = fn(name, json=payload)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["code"] == code


def test_infinite_parameter(fn):
    """1e309 is valid JSON and parses as infinity: an out-of-range parameter, not a 500."""
    r = fn("text-keywords", data=b'{"text": "fine words here", "top_n": 1e309}', content_type="application/json")
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_parameter"
