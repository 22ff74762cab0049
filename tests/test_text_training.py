"""The sentiment head's create -> train -> export path on a small subset (the committed head is
never retrained in CI), and the committed head's figures recomputed against VADER."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from sai.models import sentiment, text_encoder

ROOT = pathlib.Path(__file__).resolve().parents[1]
REPO = ROOT / "model_repository"

pytestmark = pytest.mark.skipif(not text_encoder.is_built(REPO), reason="run `sai models build` first")


def test_splits_are_disjoint_per_domain_and_by_document():
    data = sentiment.fetch_dataset()
    splits = sentiment.make_splits(data, sentiment.DEFAULT_SEED)
    assert [s.domain for s in splits] == ["movie", "tweets", "amazon", "nyt"]
    for s in splits:
        assert set(s.train_text).isdisjoint(s.test_text)
        assert 0.15 < len(s.test_text) / (len(s.train_text) + len(s.test_text)) < 0.25
    # Amazon/NYT split by document: no document id on both sides.
    rows = sentiment.load_domain(data, "nyt")
    test_texts = set(splits[3].test_text)
    docs_test = {r[0].split("_")[0] for r in rows if r[2] in test_texts}
    docs_train = {r[0].split("_")[0] for r in rows if r[2] in set(splits[3].train_text)}
    assert docs_test.isdisjoint(docs_train)
    # near-neutral sentences are dropped
    assert len(splits[0].train_text) + len(splits[0].test_text) < len(sentiment.load_domain(data, "movie"))


@pytest.mark.slow
def test_train_on_a_subset_is_deterministic_and_exports_a_working_head(tmp_path):
    steps = []
    first = sentiment.train(tmp_path / "a", seed=7, subset=120, progress=steps.append)
    second = sentiment.train(tmp_path / "b", seed=7, subset=120)
    assert steps and all(isinstance(s, str) for s in steps)
    assert first["model_sha256"] == second["model_sha256"]  # seeded end to end
    assert first["subset_per_domain"] == 120 and first["onnx_vs_sklearn_max_abs_diff"] < 1e-4
    saved = json.loads((tmp_path / "a" / "TRAINING_REPORT.json").read_text())
    assert saved["accuracy"] == first["accuracy"]
    assert set(first["accuracy"]) == {"movie", "tweets", "amazon", "nyt", "all"}
    # Even 380 training sentences give a head well above chance on the held-out ones.
    assert first["accuracy"]["all"]["head_accuracy"] > 0.65
    enc = sentiment.Encoder(text_encoder.model_path(REPO))
    emb = enc.embed(["I loved it, a wonderful and moving film.", "so so"])
    probs = sentiment.head_predict(tmp_path / "a" / "1" / "model.onnx", emb)
    assert probs.shape == (2, 2) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


@pytest.mark.slow
def test_committed_head_report_is_reproducible_and_beats_vader_off_twitter():
    rep = sentiment.report(REPO)
    saved = json.loads((REPO / "sentiment_head" / "TRAINING_REPORT.json").read_text())
    for domain, figures in rep["accuracy"].items():
        assert figures["n_test"] == saved["accuracy"][domain]["n_test"]
        assert figures["head_accuracy"] == pytest.approx(saved["accuracy"][domain]["head_accuracy"], abs=0.005)
        assert figures["vader_accuracy"] == pytest.approx(saved["accuracy"][domain]["vader_accuracy"], abs=1e-9)
    # VADER's own validation tweets are its home ground (see the README); elsewhere the head wins.
    for domain in ("movie", "amazon", "nyt", "all"):
        assert rep["accuracy"][domain]["head_accuracy"] > rep["accuracy"][domain]["vader_accuracy"], domain
