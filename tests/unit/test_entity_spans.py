"""common/entities.py without a model: character spans -> BIO tags over word pieces -> spans again,
exact offsets after the tokenizer's normalisation, and windows that merge back to the whole text."""

from __future__ import annotations

import numpy as np
import pytest

from common import entities as ent
from common import spacy_hash
from sai.models.entity_training import piece_tags

TEXTS = [
    ("Angela Merkel met Emmanuel Macron in Paris.", [(0, 13, "PERSON"), (18, 33, "PERSON"), (37, 42, "GPE")]),
    # Accents the uncased tokenizer strips, a decomposed e + combining acute, a non-BMP emoji.
    ("Zoë Kravitz 🎬 met Zoe\u0301 Ruiz in São Paulo!", [(0, 11, "PERSON"), (18, 27, "PERSON"), (31, 40, "GPE")]),
    ("Shares of IBM fell 3% in the U.S. on Monday.", [(10, 13, "ORG"), (19, 21, "PERCENT"), (29, 33, "GPE"), (37, 43, "DATE")]),
]


def one_hot(tags: np.ndarray) -> np.ndarray:
    probs = np.zeros((len(tags), len(ent.TAGS)), np.float32)
    probs[np.arange(len(tags)), tags] = 1.0
    return probs


@pytest.mark.parametrize("text, spans", TEXTS)
def test_spans_survive_tagging_and_decoding(text, spans):
    (p,) = ent.pieces([text])
    found = ent.decode(text, p, one_hot(piece_tags(p, spans)))
    assert [(e["start"], e["end"], e["label"]) for e in found] == spans
    for e in found:
        assert text[e["start"] : e["end"]] == e["text"]
        assert e["score"] == 1.0


def test_case_features_read_the_original_text():
    (p,) = ent.pieces(["NASA hired Ada in 1969"])
    words = [tuple(f) for f in p.case[:, :3]]
    assert words[0] == (1, 1, 0)  # NASA: upper, all upper
    assert (0, 0, 0) in words  # hired
    assert words[-1][2] == 1  # a digit
    assert p.case[:, 3].sum() == sum(1 for i in range(1, len(p.ids)) if p.word_ids[i] == p.word_ids[i - 1])


def test_an_entity_does_not_begin_or_end_with_an_emoji():
    text = "🎉 Zoë Kravitz ❤️ met Ada. I paid $3 in the U.S."
    (p,) = ent.pieces([text])
    spans = [
        (0, text.index(" met"), "PERSON"),
        (text.index("$"), text.index(" in"), "MONEY"),
        (text.index("the U"), len(text), "GPE"),
    ]
    found = ent.decode(text, p, one_hot(piece_tags(p, spans)))
    assert [(e["text"], e["start"], e["label"]) for e in found] == [
        ("Zoë Kravitz", 2, "PERSON"),
        ("$3", text.index("$"), "MONEY"),
        ("the U.S.", text.index("the U"), "GPE"),
    ]
    (p,) = ent.pieces(["🎉 went"])
    assert ent.decode("🎉 went", p, one_hot(piece_tags(p, [(0, 1, "PERSON")]))) == []  # nothing left of it


def test_word_features_are_the_whole_words_rows_in_the_teachers_tables():
    (p,) = ent.pieces(["Deluga met DELUGA and deluga in Hoceïma 2024"])
    w = p.words
    assert w.shape == (len(p.ids), ent.WORD_FEATURES) and w.dtype == np.int64
    per_table = w.reshape(len(p.ids), len(ent.WORD_ROWS), ent.WORD_HASHES)
    assert all((per_table[:, i] >= 0).all() and (per_table[:, i] < n).all() for i, n in enumerate(ent.WORD_ROWS))
    first = {p.word_ids[i]: i for i in range(len(p.ids) - 1, -1, -1)}  # word -> its first piece
    for i, wid in enumerate(p.word_ids):
        assert (w[i] == w[first[wid]]).all()  # every piece of a word carries the word's rows
    deluga, upper, lower = (per_table[first[k]] for k in (0, 2, 4))
    assert (deluga[0] == upper[0]).all() and (upper[0] == lower[0]).all()  # one NORM (lower-cased)
    assert (deluga[1] != lower[1]).any() and (deluga[3] != upper[3]).any()  # first letter, shape differ
    # Pure integer hashing (not Python's salted hash()): the same in every process. The exact
    # values are spaCy's, checked against spaCy itself in tests/test_entities_training.py.
    assert ent._word_rows("London")[:4] == ent._word_rows("london")[:4] == (4594, 1565, 539, 3495)  # spaCy's
    assert spacy_hash.string_id("london") == 686896126224900680  # en_core_web_sm's nlp.vocab.strings["london"]
    assert spacy_hash.shape("London") == "Xxxxx" and spacy_hash.shape("U.S.") == "X.X." and spacy_hash.shape("2024") == "dddd"
    assert spacy_hash.string_id("") == 0 and spacy_hash.string_id("number") == 432  # spaCy's symbols


def test_windows_overlap_and_merge_back_to_the_whole_text():
    text = " ".join(f"Word{i} met Person{i} in City{i}." for i in range(40))
    (p,) = ent.pieces([text])
    wins = ent.windows([p], length=32, overlap=8)
    assert len(wins.spans) > 5
    assert wins.feeds["input_ids"].shape[1] <= 32
    for (_, s0, e0), (_, s1, _e1) in zip(wins.spans, wins.spans[1:]):
        assert s1 == e0 - 8 and s1 > s0
    assert wins.spans[-1][2] == len(p.ids)
    # Per-row "probabilities" that encode the piece's own position: merging must put each piece's
    # row value back at its position, from some window that holds it.
    rows = np.zeros(wins.feeds["input_ids"].shape + (2,), np.float32)
    for r, (_, s, e) in enumerate(wins.spans):
        rows[r, 1 : e - s + 1, 0] = np.arange(s, e)
        rows[r, 1 : e - s + 1, 1] = r
    (merged,) = ent.merge([p], wins, rows)
    assert np.array_equal(merged[:, 0], np.arange(len(p.ids)))
    # Each piece comes from the window where it is most central: never from a window's outer 4.
    for i, r in enumerate(merged[:, 1].astype(int)):
        _, s, e = wins.spans[r]
        assert min(i - s, e - 1 - i) >= 4 or s == 0 and i < 4 or e == len(p.ids) and i >= e - 4


def test_decoding_keeps_an_entity_under_one_label():
    """Tagged word by word, "Al" is B-PERSON and "Hoceima" I-GPE: two broken entities. The best
    valid BIO sequence is one GPE."""
    text = "Al Hoceima"
    (p,) = ent.pieces([text])
    tag = {t: i for i, t in enumerate(ent.TAGS)}
    probs = np.full((len(p.ids), len(ent.TAGS)), 0.001, np.float32)
    probs[0, tag["B-PERSON"]], probs[0, tag["B-GPE"]] = 0.5, 0.45
    probs[1:, tag["I-GPE"]] = 0.9
    (found,) = ent.decode(text, p, probs)
    assert (found["text"], found["label"], found["start"], found["end"]) == ("Al Hoceima", "GPE", 0, 10)
    assert ent.viterbi(np.zeros((0, len(ent.TAGS)))) == []
