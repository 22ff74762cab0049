"""The sentiment head's create -> train -> export path on a small subset (the committed adapter is
never retrained in CI), the build from the committed adapter, and the built head's figures
recomputed against VADER."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from sai.models import lora, rated_sentences, sentiment_head, sentiment_training, text_encoder

ROOT = pathlib.Path(__file__).resolve().parents[1]
REPO = ROOT / "model_repository"

pytestmark = pytest.mark.skipif(not text_encoder.is_built(REPO), reason="run `sai models build` first")


def test_splits_are_disjoint_per_domain_and_by_document():
    data = rated_sentences.fetch_dataset()
    splits = rated_sentences.make_splits(data, sentiment_training.DEFAULT_SEED)
    assert [s.domain for s in splits] == ["movie", "tweets", "amazon", "nyt"]
    for s in splits:
        assert set(s.train_text).isdisjoint(s.test_text)
        assert 0.15 < len(s.test_text) / (len(s.train_text) + len(s.test_text)) < 0.25
    # Amazon/NYT split by document: no document id on both sides.
    rows = rated_sentences.load_domain(data, "nyt")
    test_texts = set(splits[3].test_text)
    docs_test = {r[0].split("_")[0] for r in rows if r[2] in test_texts}
    docs_train = {r[0].split("_")[0] for r in rows if r[2] in set(splits[3].train_text)}
    assert docs_test.isdisjoint(docs_train)
    # near-neutral sentences are dropped
    assert len(splits[0].train_text) + len(splits[0].test_text) < len(rated_sentences.load_domain(data, "movie"))


@pytest.mark.slow
def test_train_on_a_subset_is_deterministic_and_exports_a_working_head(tmp_path):
    steps = []
    first = sentiment_training.train(tmp_path / "a", seed=7, subset=120, progress=steps.append, epochs=1)
    second = sentiment_training.train(tmp_path / "b", seed=7, subset=120, epochs=1)
    assert len(steps) == 5 and all(isinstance(s, str) for s in steps)
    assert first["adapter_sha256"] == second["adapter_sha256"]  # seeded end to end
    assert first["subset_per_domain"] == 120 and first["onnx_vs_torch_max_abs_diff"] < 1e-4
    saved = json.loads((tmp_path / "a" / "TRAINING_REPORT.json").read_text())
    assert saved["accuracy"] == first["accuracy"]
    assert set(first["accuracy"]) == {"movie", "tweets", "amazon", "nyt", "all"}
    # 380 training sentences and one epoch: the stack leans on the lexicon, well above chance.
    assert first["accuracy"]["all"]["head_accuracy"] > 0.65
    # The adapter is small (that is what gets committed) and rebuilds the same graph.
    assert (tmp_path / "a" / "adapter.npz").stat().st_size < 2_000_000
    rebuilt = tmp_path / "rebuilt.onnx"
    sentiment_head.export_onnx(sentiment_head.make_head(lora.load_adapter(tmp_path / "a")), rebuilt)
    enc = sentiment_head.Encoder(text_encoder.model_path(REPO))
    texts = ["I loved it, a wonderful and moving film.", "so so"]
    states, lexicon = enc.states(texts), sentiment_head.lexicon_scores(texts)
    probs = sentiment_head.head_predict(tmp_path / "a" / "1" / "model.onnx", states, lexicon)
    assert probs.shape == (2, 2) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert np.allclose(sentiment_head.head_predict(rebuilt, states, lexicon), probs, atol=1e-5)


def test_committed_adapter_matches_its_report_and_the_build():
    head_dir = REPO / "sentiment_head"
    saved = json.loads((head_dir / "TRAINING_REPORT.json").read_text())
    assert lora.adapter_sha256(lora.load_adapter(head_dir)) == saved["adapter_sha256"]
    assert sentiment_training.is_built(REPO)  # make test builds first; a stale build would show here


@pytest.mark.slow
def test_committed_head_report_is_reproducible_and_beats_vader_on_every_domain():
    rep = sentiment_training.report(REPO)
    saved = json.loads((REPO / "sentiment_head" / "TRAINING_REPORT.json").read_text())
    for domain, figures in rep["accuracy"].items():
        assert figures["n_test"] == saved["accuracy"][domain]["n_test"]
        assert figures["head_accuracy"] == pytest.approx(saved["accuracy"][domain]["head_accuracy"], abs=0.005)
        assert figures["vader_accuracy"] == pytest.approx(saved["accuracy"][domain]["vader_accuracy"], abs=1e-9)
    # The target: the head beats VADER in every domain of its split. On tweets the margin is narrow
    # and other seeds can lose (docs/sentiment.md); retraining the adapter must not go unnoticed.
    for domain in ("movie", "tweets", "amazon", "nyt", "all"):
        assert rep["accuracy"][domain]["head_accuracy"] > rep["accuracy"][domain]["vader_accuracy"], domain
