"""KeyBERT-style keyword extraction, the model-free half: candidate phrases and Maximal Marginal
Relevance. Pure Python + numpy (no imports from the function package) so it is unit-tested alone.

Candidates are 1..ngram_max consecutive words inside one clause (never across punctuation) with no
stop word and not only digits, lower-cased. Unlike sklearn's CountVectorizer (KeyBERT's default),
stop words split phrases instead of being deleted, so "state of the art" never becomes "state art".
"""

from __future__ import annotations

import re

import numpy as np

# Clause boundaries: sentence punctuation, brackets, quotes, dashes between spaces, line breaks.
_CLAUSES = re.compile(r"[.,;:!?()\[\]{}\"“”«»…|/\\\n\r\t]+|\s[-–—]+\s")
_WORD = re.compile(r"[^\W_](?:[\w'’.-]*[^\W_])?")

STOP_WORDS = frozenset(
    """
a about above across after afterwards again against all almost alone along already also although
always am among amongst an and another any anyhow anyone anything anyway anywhere are around as at
back be became because become becomes becoming been before beforehand behind being below beside
besides between beyond both but by can cannot could did do does doing done down during each eg
either else elsewhere enough etc even ever every everyone everything everywhere except few for
former formerly from further get gets got had has have having he hence her here hereafter hereby
herein hers herself him himself his how however i ie if in indeed instead into is it its itself
just keep last latter latterly least less let like made make makes many may me meanwhile might
mine more moreover most mostly much must my myself namely neither never nevertheless next no nobody
none noone nor not nothing now nowhere of off often on once one only onto or other others otherwise
our ours ourselves out over own per perhaps please put quite rather re really said same say says
see seem seemed seeming seems several she should since so some somehow someone something sometime
sometimes somewhere still such than that the their theirs them themselves then thence there
thereafter thereby therefore therein thereupon these they this those though through throughout
thru thus to together too toward towards under until up upon us use used uses using very via was
we well were what whatever when whence whenever where whereafter whereas whereby wherein whereupon
wherever whether which while whither who whoever whole whom whose why will with within without
would yet you your yours yourself yourselves s t don didn doesn isn wasn aren weren won wouldn
can't don't won't it's i'm i've you're we're they're that's there's
""".split()
)


def candidates(text: str, ngram_max: int = 3, limit: int = 128) -> list[str]:
    """Distinct candidate phrases, most frequent first (ties: earlier first), at most `limit`."""
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for clause in _CLAUSES.split(text):
        words = [w.lower().replace("’", "'") for w in _WORD.findall(clause)]
        for i in range(len(words)):
            for n in range(1, ngram_max + 1):
                gram = words[i : i + n]
                if len(gram) < n or any(w in STOP_WORDS or len(w) < 2 for w in gram):
                    break  # longer n-grams from i contain the same stop word
                if all(w.replace(".", "").replace("-", "").isdigit() for w in gram):
                    continue
                phrase = " ".join(gram)
                counts[phrase] = counts.get(phrase, 0) + 1
                first.setdefault(phrase, len(first))
    ranked = sorted(counts, key=lambda p: (-counts[p], first[p]))
    return ranked[:limit]


def mmr(doc: np.ndarray, cands: np.ndarray, top_n: int, diversity: float) -> list[tuple[int, float]]:
    """Maximal Marginal Relevance over unit vectors: pick the candidate most similar to the document,
    then repeatedly the one maximising (1 - diversity) * sim(doc) - diversity * max sim(picked).
    Returns (candidate index, cosine similarity to the document), in pick order."""
    if len(cands) == 0:
        return []
    doc_sim = cands @ doc
    cand_sim = cands @ cands.T
    picked = [int(np.argmax(doc_sim))]
    rest = [i for i in range(len(cands)) if i != picked[0]]
    while rest and len(picked) < top_n:
        redundancy = cand_sim[np.ix_(rest, picked)].max(axis=1)
        score = (1 - diversity) * doc_sim[rest] - diversity * redundancy
        best = rest[int(np.argmax(score))]
        picked.append(best)
        rest.remove(best)
    return [(i, float(doc_sim[i])) for i in picked]
