"""Named entities from the entity head's per-token tag probabilities: the word pieces of a whole
text (no truncation), overlapping windows that fit the encoder, the capitalisation features the
head takes beside the token states, and decoding BIO tags back to character spans of the original
text. Shared by the text-entities function and the model's training report
(sai/models/entity_training.py), so the report measures exactly what the function serves.

The encoder is uncased (MiniLM lower-cases and strips accents), yet capitalisation is most of what
tells "Apple" from "apple". So the function computes `case_features` from the original text at
each piece's offsets and sends them with the token ids, as text-sentiment sends its lexicon score.
It also sends `word_features`: per piece, the rows of its whole word (as written) in the four
hashed embedding tables of the teacher's own NER (spaCy's NORM, PREFIX, SUFFIX and SHAPE, four rows
each: common/spacy_hash.py), which the head embeds with the teacher's own tables and window
encoder (sai/models/entity_head.py). With the encoder's states alone it could not even fit its
training labels (PERSON+ORG+GPE F1 0.72 on its own training sentences, docs/entities.md); reading
each word through the teacher's rows gives it the teacher's view of words it never saw.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import spacy_hash
from .settings import setting
from .tokens import DEFAULT_TOKENIZER, max_tokens, tokenizer_path

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# spaCy's OntoNotes labels: all 18 are kept. The head costs the same per label (two more outputs
# of one linear layer), the fifteen the function was asked for are among them, and dropping WORK_OF_ART, LAW or
# LANGUAGE would only turn the teacher's spans into misleading "O" training targets.
LABELS = (
    "PERSON",
    "NORP",
    "FAC",
    "ORG",
    "GPE",
    "LOC",
    "PRODUCT",
    "EVENT",
    "WORK_OF_ART",
    "LAW",
    "LANGUAGE",
    "DATE",
    "TIME",
    "PERCENT",
    "MONEY",
    "QUANTITY",
    "ORDINAL",
    "CARDINAL",
)
TAGS = ("O",) + tuple(f"{p}-{label}" for label in LABELS for p in ("B", "I"))
CASE_FEATURES = 4  # starts upper-case, word all upper-case, has a digit, continues a word
CASE_INPUT = "case_features"
# The word features: spaCy's HashEmbed tables of en_core_web_sm's NER (NORM, PREFIX, SUFFIX, SHAPE),
# their rows and seeds (nlp.get_pipe("ner").model: hashembed attrs and E shapes); each word gets
# WORD_HASHES rows per table, so `word_features` is INT64 [pieces, 4 * WORD_HASHES].
WORD_ROWS = (5000, 1000, 2500, 2500)
WORD_SEEDS = (8, 9, 10, 11)
WORD_HASHES = 4
WORD_FEATURES = len(WORD_ROWS) * WORD_HASHES
WORD_INPUT = "word_features"

# Pieces two neighbouring windows share: every piece is predicted from a window where it has at
# least this many/2 pieces of context on either side (the encoder sees at most MAX_TOKENS).
window_overlap = setting("WINDOW_OVERLAP", int, 64, low=0, high=200)


@functools.lru_cache(maxsize=4)
def _whole_text_tokenizer(path: str) -> Tokenizer:
    """A tokenizer of its own (common.tokens' instances truncate and pad): whole texts, no
    special tokens, so windows can be cut anywhere."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    tok.no_truncation()
    tok.no_padding()
    return tok


@dataclass
class Pieces:
    """One text's word pieces, without [CLS]/[SEP]."""

    ids: list[int]
    offsets: list[tuple[int, int]]  # character offsets into the original text
    word_ids: list[int]
    case: np.ndarray  # FP32 [n, CASE_FEATURES]
    words: np.ndarray  # INT64 [n, WORD_FEATURES]


def _word_spans(offsets: list[tuple[int, int]], word_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Word id -> (start, end) characters of the whole word its pieces make up."""
    words: dict[int, tuple[int, int]] = {}
    for (s, e), w in zip(offsets, word_ids):
        ws, we = words.get(w, (s, e))
        words[w] = (min(ws, s), max(we, e))
    return words


def case_features(
    text: str, offsets: list[tuple[int, int]], word_ids: list[int], words: dict[int, tuple[int, int]]
) -> np.ndarray:
    """Per piece: [starts upper-case, its word is all upper-case (2+ letters), has a digit, is not
    the first piece of its word], from the original characters (`words`: _word_spans)."""
    out = np.zeros((len(offsets), CASE_FEATURES), np.float32)
    for i, ((s, e), w) in enumerate(zip(offsets, word_ids)):
        piece, word = text[s:e], text[slice(*words[w])]
        out[i, 0] = piece[:1].isupper()
        out[i, 1] = sum(c.isalpha() for c in word) > 1 and word.isupper()
        out[i, 2] = any(c.isdigit() for c in piece)
        out[i, 3] = i > 0 and word_ids[i - 1] == w
    return out


def table_rows(ids: Iterable[int]) -> tuple[int, ...]:
    """A word's WORD_FEATURES rows from the string ids of its NORM, PREFIX, SUFFIX and SHAPE."""
    return tuple(k % n for key, seed, n in zip(ids, WORD_SEEDS, WORD_ROWS) for k in spacy_hash.keys(int(key), seed))


@functools.lru_cache(maxsize=65536)
def _word_rows(word: str) -> tuple[int, ...]:
    return table_rows(spacy_hash.string_id(a) for a in spacy_hash.attributes(word))


def word_features(text: str, word_ids: list[int], words: dict[int, tuple[int, int]]) -> np.ndarray:
    """Per piece: the WORD_FEATURES table rows of the whole word it belongs to, as written."""
    out = np.zeros((len(word_ids), WORD_FEATURES), np.int64)
    for i, w in enumerate(word_ids):
        out[i] = _word_rows(text[slice(*words[w])])
    return out


def pieces(texts: list[str], path: str | None = None) -> list[Pieces]:
    tok = _whole_text_tokenizer(path or tokenizer_path() or str(DEFAULT_TOKENIZER))
    out = []
    for text, enc in zip(texts, tok.encode_batch(texts, add_special_tokens=False)):
        word_ids = [-1 if w is None else w for w in enc.word_ids]
        offsets = [(int(s), int(e)) for s, e in enc.offsets]
        words = _word_spans(offsets, word_ids)  # once, for both kinds of features
        case, word = case_features(text, offsets, word_ids, words), word_features(text, word_ids, words)
        out.append(Pieces(list(enc.ids), offsets, word_ids, case, word))
    return out


@dataclass
class Windows:
    feeds: dict[str, np.ndarray]  # encoder inputs + case_features, one row per window
    spans: list[tuple[int, int, int]]  # (text index, first piece, end piece) per row


def windows(
    all_pieces: list[Pieces], length: int | None = None, overlap: int | None = None, cls_id: int = 101, sep_id: int = 102
) -> Windows:
    """Cut each text's pieces into windows of at most `length` tokens ([CLS] and [SEP] included)
    that overlap by `overlap` pieces; an empty text still gets one (empty) window."""
    length = length or max_tokens()
    inner = length - 2
    overlap = min(window_overlap() if overlap is None else overlap, inner // 2)
    step = inner - overlap
    spans = []
    for t, p in enumerate(all_pieces):
        start = 0
        while True:
            end = min(start + inner, len(p.ids))
            spans.append((t, start, end))
            if end >= len(p.ids):
                break
            start += step
    longest = max(e - s for _, s, e in spans) + 2
    ids = np.zeros((len(spans), longest), np.int64)
    mask = np.zeros_like(ids)
    case = np.zeros((len(spans), longest, CASE_FEATURES), np.float32)
    word = np.zeros((len(spans), longest, WORD_FEATURES), np.int64)
    for row, (t, s, e) in enumerate(spans):
        n = e - s
        ids[row, : n + 2] = [cls_id] + all_pieces[t].ids[s:e] + [sep_id]
        mask[row, : n + 2] = 1
        case[row, 1 : n + 1] = all_pieces[t].case[s:e]
        word[row, 1 : n + 1] = all_pieces[t].words[s:e]
    feeds: dict[str, np.ndarray] = {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": np.zeros_like(ids),
        CASE_INPUT: case,
        WORD_INPUT: word,
    }
    return Windows(feeds, spans)


def merge(all_pieces: list[Pieces], wins: Windows, probs: np.ndarray) -> list[np.ndarray]:
    """Per text, FP32 [its pieces, len(TAGS)]: each piece from the window where it is most central."""
    out = [np.zeros((len(p.ids), probs.shape[-1]), np.float32) for p in all_pieces]
    best = [np.full(len(p.ids), -1) for p in all_pieces]
    for row, (t, s, e) in enumerate(wins.spans):
        pos = np.arange(s, e)
        margin = np.minimum(pos - s, e - 1 - pos)
        better = margin > best[t][s:e]
        out[t][s:e][better] = probs[row, 1 : e - s + 1][better]
        best[t][s:e][better] = margin[better]
    return out


@functools.lru_cache(maxsize=2)
def _transitions(labels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Log-transition matrix of valid BIO sequences (I-X only after B-X or I-X) and the valid starts."""
    n = len(labels)
    trans = np.zeros((n, n), np.float64)
    start = np.zeros(n, np.float64)
    for b, tag in enumerate(labels):
        if tag.startswith("I-"):
            start[b] = -np.inf
            for a, prev in enumerate(labels):
                if prev[2:] != tag[2:] or prev == "O":
                    trans[a, b] = -np.inf
    return trans, start


def viterbi(probs: np.ndarray, labels: tuple[str, ...] = TAGS) -> list[int]:
    """The most probable valid BIO tag sequence for per-word tag probabilities [words, tags]. Words
    tagged one by one split names ("Al" PERSON, "Hoceima" GPE); the best valid sequence keeps an
    entity's words under one label."""
    if not len(probs):
        return []
    trans, start = _transitions(tuple(labels))
    logp = np.log(probs.astype(np.float64) + 1e-9)
    score = start + logp[0]
    back = np.zeros(probs.shape, np.int64)
    for w in range(1, len(probs)):
        cand = score[:, None] + trans
        back[w] = cand.argmax(axis=0)
        score = cand.max(axis=0) + logp[w]
    path = [int(score.argmax())]
    for w in range(len(probs) - 1, 0, -1):
        path.append(int(back[w, path[-1]]))
    return path[::-1]


def decode(text: str, p: Pieces, probs: np.ndarray, labels: tuple[str, ...] = TAGS) -> list[dict]:
    """BIO tags of each word's first piece (the best valid sequence, `viterbi`) -> entities with
    character offsets into `text`. A word belongs to an entity whole (its span runs from its first
    piece to its last); entities of one label with only whitespace between them are one. `score` is
    the mean probability of the chosen tags over the entity's words."""
    words: list[tuple[int, int, int]] = []  # (first piece, start char, end char)
    for i, w in enumerate(p.word_ids):
        if i and p.word_ids[i - 1] == w:
            words[-1] = (words[-1][0], words[-1][1], p.offsets[i][1])
        else:
            words.append((i, p.offsets[i][0], p.offsets[i][1]))
    word_probs = probs[[first for first, _, _ in words]] if words else probs[:0]
    entities: list[dict] = []
    current: dict | None = None
    for (_, start, end), k, row in zip(words, viterbi(word_probs, tuple(labels)), word_probs):
        tag = labels[k]
        if tag == "O":
            current = None
            continue
        prefix, label = tag.split("-", 1)
        # I- continues; so does a B- of the same label right after it with only spaces between:
        # two names of one kind are never written "Emmanuel Macron" apart, one often is.
        adjacent = current is not None and not text[current["end"] : start].strip()
        if current is not None and current["label"] == label and (prefix == "I" or adjacent):
            current["end"] = end
            current["_scores"].append(float(row[k]))
            continue
        current = {"label": label, "start": start, "end": end, "_scores": [float(row[k])]}
        entities.append(current)
    for ent in entities:
        scores = ent.pop("_scores")
        ent["start"], ent["end"] = _trim_symbols(text, ent["start"], ent["end"])
        ent["text"] = text[ent["start"] : ent["end"]]
        ent["score"] = round(sum(scores) / len(scores), 6)
    return [{k: e[k] for k in ("text", "label", "start", "end", "score")} for e in entities if e["text"]]


def _is_symbol(c: str) -> bool:
    # Emoji and other pictographs, their modifiers, joiners and variation selectors; not "$" or ".".
    return c.isspace() or unicodedata.category(c) in ("So", "Sk", "Cf") or "\ufe00" <= c <= "\ufe0f"


def _trim_symbols(text: str, start: int, end: int) -> tuple[int, int]:
    """An entity does not begin or end with an emoji: the tokenizer reads one as [UNK], and the
    head (like its teacher) sometimes tags it with the name beside it ("🎉 Zoë Kravitz")."""
    while start < end and _is_symbol(text[start]):
        start += 1
    while end > start and _is_symbol(text[end - 1]):
        end -= 1
    return start, end


def extract(
    texts: list[str], infer: Callable[[dict[str, np.ndarray]], tuple[np.ndarray, str]], max_batch: int = 32
) -> tuple[list[list[dict]], list[int], str]:
    """Entities of each text. `infer(feeds) -> (probabilities [rows, length, len(TAGS)], version)`
    runs the model on at most `max_batch` windows at a time. Returns (entities per text, pieces per
    text, model version)."""
    all_pieces = pieces(texts)
    wins = windows(all_pieces)
    n = len(wins.spans)
    probs: np.ndarray | None = None
    version = ""
    order = sorted(range(n), key=lambda r: wins.spans[r][2] - wins.spans[r][1])
    for start in range(0, n, max_batch):
        idx = order[start : start + max_batch]
        width = int(wins.feeds["attention_mask"][idx].sum(axis=1).max())
        chunk = {k: v[idx, :width] for k, v in wins.feeds.items()}
        out, version = infer(chunk)
        if probs is None:
            probs = np.zeros((n, wins.feeds["input_ids"].shape[1], out.shape[-1]), np.float32)
        probs[idx, :width] = out
    per_text = merge(all_pieces, wins, probs if probs is not None else np.zeros((0, 0, len(TAGS)), np.float32))
    return [decode(t, p, pr) for t, p, pr in zip(texts, all_pieces, per_text)], [len(p.ids) + 2 for p in all_pieces], version
