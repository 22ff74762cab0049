"""spaCy's hashed word features, bit for bit, without spaCy (functions must not need it).

The entity head's teacher, spaCy's `en_core_web_sm` NER, embeds each word from four attributes
(NORM, PREFIX, SUFFIX, SHAPE), each through a HashEmbed table: the attribute string becomes a
64-bit id (spacy/strings.pyx: MurmurHash64A of the UTF-8 bytes, seed 1, or the reserved id of a
spaCy symbol), and thinc hashes that id with the table's seed into four 32-bit keys
(thinc/backends/numpy_ops.pyx `hash` -> MurmurHash3_x86_128_uint64, which computes the x64
finaliser over one key), each taken modulo the table's rows; the word's vector is the sum of
those four rows. The head uses the same rows, so words the teacher confuses by a shared row are
confused the same way, and an unseen word lands on rows its training words taught.
tests/test_entities_training.py checks these functions against spaCy and thinc on real text.
"""

from __future__ import annotations

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1

# spacy/symbols.pyx IDS entries an attribute string can equal (lower-case words, 1-3 characters,
# shapes): spaCy's StringStore gives these their symbol id instead of a hash.
SYMBOLS = {
    "ID": 64, "POS": 74, "TAG": 75, "DEP": 76, "ADJ": 84, "ADP": 85, "ADV": 86, "AUX": 87, "DET": 90, "NUM": 93, "SYM": 99,
    "X": 101, "EOL": 102, "ORG": 383, "GPE": 384, "LOC": 385, "LAW": 390, "acomp": 398, "advcl": 399, "advmod": 400,
    "agent": 401, "amod": 402, "appos": 403, "attr": 404, "aux": 405, "auxpass": 406, "cc": 407, "ccomp": 408,
    "complm": 409, "conj": 410, "cop": 411, "csubj": 412, "csubjpass": 413, "dep": 414, "det": 415, "dobj": 416,
    "expl": 417, "hmod": 418, "hyph": 419, "infmod": 420, "intj": 421, "iobj": 422, "mark": 423, "meta": 424, "neg": 425,
    "nmod": 426, "nn": 427, "npadvmod": 428, "nsubj": 429, "nsubjpass": 430, "num": 431, "number": 432, "oprd": 433,
    "obj": 434, "obl": 435, "parataxis": 436, "partmod": 437, "pcomp": 438, "pobj": 439, "poss": 440, "possessive": 441,
    "preconj": 442, "prep": 443, "prt": 444, "punct": 445, "quantmod": 446, "relcl": 447, "rcmod": 448, "root": 449,
    "xcomp": 450, "acl": 451, "IDX": 455, "_": 456,
}  # fmt: skip


def murmur64a(data: bytes, seed: int = 1) -> int:
    """MurmurHash64A (Austin Appleby, public domain), as murmurhash's hash64."""
    m, r = 0xC6A4A7935BD1E995, 47
    h = (seed ^ (len(data) * m)) & M64
    whole = len(data) - len(data) % 8
    for i in range(0, whole, 8):
        k = (int.from_bytes(data[i : i + 8], "little") * m) & M64
        k = ((k ^ (k >> r)) * m) & M64
        h = ((h ^ k) * m) & M64
    if whole < len(data):
        h = ((h ^ int.from_bytes(data[whole:], "little")) * m) & M64
    h = ((h ^ (h >> r)) * m) & M64
    return h ^ (h >> r)


def string_id(s: str) -> int:
    """spaCy's StringStore id of `s`."""
    if not s:
        return 0
    return SYMBOLS.get(s) or murmur64a(s.encode("utf-8", "surrogatepass"))


def _fmix64(k: int) -> int:
    k = ((k ^ (k >> 33)) * 0xFF51AFD7ED558CCD) & M64
    k = ((k ^ (k >> 33)) * 0xC4CEB9FE1A85EC53) & M64
    return k ^ (k >> 33)


def keys(key: int, seed: int) -> tuple[int, int, int, int]:
    """thinc's MurmurHash3_x86_128_uint64(key, seed): four 32-bit keys."""
    k = (key * 0x87C37B91114253D5) & M64
    k = (((k << 31) | (k >> 33)) * 0x4CF5AD432745937F) & M64
    h2 = seed ^ 8
    h1 = ((k ^ h2) + h2) & M64
    h2 = (h2 + h1) & M64
    h1, h2 = _fmix64(h1), _fmix64(h2)
    h1 = (h1 + h2) & M64
    h2 = (h2 + h1) & M64
    return h1 & M32, h1 >> 32, h2 & M32, h2 >> 32


def shape(word: str) -> str:
    """spaCy's word shape (spacy/lang/lex_attrs.py word_shape): X, x, d per character, other
    characters as they are, a run of one kind cut at four ("Xxxxx", "dddd", "X.X.")."""
    if len(word) >= 100:
        return "LONG"
    out, last, run = [], "", 0
    for c in word:
        k = ("X" if c.isupper() else "x") if c.isalpha() else "d" if c.isdigit() else c
        run = run + 1 if k == last else 0
        last = k
        if run < 4:
            out.append(k)
    return "".join(out)


def attributes(word: str) -> tuple[str, str, str, str]:
    """NORM, PREFIX, SUFFIX, SHAPE of a word as spaCy's English lexemes have them (NORM is the
    lower-cased form: spaCy's norm exceptions, such as "n't" -> "not", are left out)."""
    return word.lower(), word[:1], word[-3:], shape(word)
