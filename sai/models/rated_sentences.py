"""The rated sentences the sentiment head is trained and judged on, and their split.

Data: the human-rated sentences of Hutto & Gilbert (ICWSM 2014), shipped inside the vaderSentiment
3.3.2 *source distribution* (additional_resources/hutto_ICWSM_2014.tar.gz). The sdist is fetched with
pip from the package index (cached under .sai/cache/), nothing from a model hub. Labels: sign of the
mean human rating (-4..4). Sentences with |rating| < NEUTRAL_BAND are dropped as near-neutral, and
exact repeats are kept once. Each domain holds out 20 % for testing. For Amazon and NYT the split is
by document, so sentences of one review or editorial never sit on both sides.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tarfile
from dataclasses import dataclass

import numpy as np

from sai import paths

VADER_VERSION = "3.3.2"
NEUTRAL_BAND = 0.5
TEST_FRACTION = 0.2
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
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"vaderSentiment=={VADER_VERSION}",
            "-d",
            str(sdist_dir),
        ]
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
        splits.append(
            Split(
                domain,
                [r[2] for r in train],
                np.array([r[1] > 0 for r in train], dtype=np.int64),
                [r[2] for r in test],
                np.array([r[1] > 0 for r in test], dtype=np.int64),
            )
        )
    return splits
