"""The entity head's teacher -> train -> export path on a small subset (the committed adapter is
never retrained in CI), and the committed adapter against its report and the build."""

from __future__ import annotations

import json

import numpy as np
import pytest

from common import entities as ent
from sai.models import entity_head, entity_training, lora, text_encoder
from sai.paths import model_repository

REPO = model_repository()

pytestmark = pytest.mark.skipif(not text_encoder.is_built(REPO), reason="run `sai models build` first")


def test_corpus_is_seeded_and_the_held_out_split_is_disjoint():
    texts = entity_training.corpus(entity_training.DEFAULT_SEED)
    assert texts == entity_training.corpus(entity_training.DEFAULT_SEED)
    train, test = entity_training.split(texts)
    assert set(train).isdisjoint(test) and len(set(texts)) == len(texts)
    assert 0.1 < len(test) / len(texts) < 0.2


def test_word_features_are_the_teachers_own_hashed_rows():
    """common/spacy_hash.py reimplements spaCy's string ids and thinc's HashEmbed keys (the
    functions must not need spaCy): bit for bit on the corpus's words, symbols and odd cases."""
    from spacy.attrs import NORM, PREFIX, SHAPE, SUFFIX
    from thinc.api import NumpyOps

    from common import spacy_hash

    nlp = entity_training.load_teacher()
    texts = entity_training.corpus(entity_training.DEFAULT_SEED)[:400] + [
        "Xavier _ X-ray I A.B. number ŞİŞLİ naïve 🎉 " + "a" * 120
    ]
    checked = 0
    for doc in nlp.pipe(texts):
        ids = doc.to_array([NORM, PREFIX, SUFFIX, SHAPE]).astype(np.uint64)
        for tok, row in zip(doc, ids):
            assert spacy_hash.attributes(tok.text)[1:] == (tok.prefix_, tok.suffix_, tok.shape_)
            for a, (text, seed) in enumerate(zip((tok.norm_, tok.prefix_, tok.suffix_, tok.shape_), ent.WORD_SEEDS)):
                assert spacy_hash.string_id(text) == int(row[a]), text
                assert spacy_hash.keys(int(row[a]), seed) == tuple(int(k) for k in NumpyOps().hash(row[a : a + 1], seed)[0])
                checked += 1
    assert checked > 20000
    # ...and the tables are the teacher's: its NER's hashed embeddings, in attribute order.
    tables = [n for n in nlp.get_pipe("ner").model.walk() if n.name == "hashembed"]
    assert [(n.attrs["seed"], n.get_param("E").shape[0]) for n in tables] == list(zip(ent.WORD_SEEDS, ent.WORD_ROWS))


def test_the_heads_tok2vec_starts_as_the_teachers():
    """The head starts from the teacher's NER tok2vec (entity_head.tok2vec_class, weights from
    entity_training.teacher_tok2vec): on spaCy's own tokens it gives the teacher's vectors, padding and
    all (two texts in one batch, so word slots and masks are exercised)."""
    import torch
    from spacy.attrs import NORM, PREFIX, SHAPE, SUFFIX

    nlp = entity_training.load_teacher()
    t2v = entity_head.tok2vec_class()()
    t2v.load_teacher(entity_training.teacher_tok2vec(nlp))
    teacher = nlp.get_pipe("ner").model.get_ref("tok2vec").layers[0]  # before the parser's projection
    docs = [nlp.make_doc(t) for t in ("Apple's Tim Cook flew to Cupertino, California, on 3 May.", "Hi Bob")]
    longest = max(len(d) for d in docs) + 2
    words = np.zeros((len(docs), longest, ent.WORD_FEATURES), np.int64)
    mask = np.zeros((len(docs), longest), np.int64)
    for i, doc in enumerate(docs):
        keys = doc.to_array([NORM, PREFIX, SUFFIX, SHAPE]).astype(np.uint64)
        words[i, 1 : len(doc) + 1] = [ent.table_rows(row) for row in keys]
        mask[i, : len(doc) + 2] = 1
    case = torch.zeros(len(docs), longest, ent.CASE_FEATURES)
    A, _, valid = entity_head.word_map(torch.from_numpy(mask), case)
    with torch.no_grad():
        got = t2v(torch.from_numpy(words), A, valid).numpy()
    for i, (doc, want) in enumerate(zip(docs, teacher.predict(docs))):
        pad = entity_head.T2V_PAD
        assert valid[i, pad : pad + len(doc)].all() and valid[i].sum() == len(doc)
        assert np.abs(got[i, pad : pad + len(doc)] - want).max() < 1e-4


@pytest.mark.slow
def test_train_on_a_subset_exports_a_working_head(tmp_path):
    steps = []
    rep = entity_training.train(tmp_path / "h", seed=7, subset=240, progress=steps.append, epochs=1)
    assert len(steps) == 5 and all(isinstance(s, str) for s in steps)
    assert rep["corpus"]["sentences"] == 240 and rep["onnx_vs_torch_max_abs_diff"] < 1e-4
    assert rep["hand_labelled"]["sentences"] >= 30
    assert set(rep["sentences_per_second"]) == {"batch_1", "batch_16"}
    assert json.loads((tmp_path / "h" / "TRAINING_REPORT.json").read_text())["adapter_sha256"] == rep["adapter_sha256"]
    # The adapter is small (that is what gets committed) and rebuilds the same graph.
    assert (tmp_path / "h" / "adapter.npz").stat().st_size < 5_000_000
    rebuilt = tmp_path / "rebuilt.onnx"
    entity_head.export_onnx(entity_head.make_head(lora.load_adapter(tmp_path / "h")), rebuilt)
    enc = text_encoder.model_path(REPO)
    texts = ["Angela Merkel met Emmanuel Macron in Paris.", "ok"]
    a = entity_head.Pipeline(enc, tmp_path / "h" / "1" / "model.onnx")
    b = entity_head.Pipeline(enc, rebuilt)
    wins = ent.windows(ent.pieces(texts))
    pa, pb = a.infer(wins.feeds)[0], b.infer(wins.feeds)[0]
    assert pa.shape[-1] == len(ent.TAGS) and np.allclose(pa.sum(-1), 1, atol=1e-4)
    assert np.abs(pa - pb).max() < 1e-5


def test_committed_adapter_matches_its_report_and_the_build():
    head_dir = REPO / entity_training.MODEL_NAME
    saved = json.loads((head_dir / "TRAINING_REPORT.json").read_text())
    assert lora.adapter_sha256(lora.load_adapter(head_dir)) == saved["adapter_sha256"]
    assert entity_training.is_built(REPO)  # make test builds first; a stale build would show here
    assert saved["held_out_vs_teacher"]["PERSON+ORG+GPE"]["support"] > 1000
