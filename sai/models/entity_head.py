"""The entity head as a network: a token classifier on the shared `text_encoder`, its adapter (what
training changed) and the ONNX export Triton serves.

Like sentiment_head it continues the encoder's token states after layer 4 (`token_states`) with
copies of MiniLM's layers 5 and 6 carrying LoRA factors. The encoder is uncased, so the head also
takes, per token, computed by the function from the original text (common/entities.py):
`case_features` (starts upper-case, all upper-case, digit, word continuation) and `word_features`
(the word's rows in the teacher's four hashed tables: NORM, PREFIX, SUFFIX, SHAPE, four rows each).
The head runs the teacher's own NER tok2vec on those rows, word by word (`tok2vec_class`: spaCy's
hashed embeddings and window CNN, started from en_core_web_sm's weights, MIT), so it sees each word
the way its teacher does. The vectors of a piece's word and of the words either side, with the case
features, are projected into the states before layers 5-6 (so attention can use them) and given to
the tag layer again.

The ONNX graph: inputs `token_states` FP32 [batch, length, 384], `attention_mask` INT64
[batch, length], `case_features` FP32 [batch, length, 4], `word_features` INT64 [batch, length, 16];
output `probabilities` FP32 [batch, length, len(TAGS)], softmax over BIO tags
(common.entities.TAGS, labels.txt).
The LoRA layers and the adapter are shared with sentiment_head (lora.py); training and its
reasons: sai/models/entity_training.py.
"""

from __future__ import annotations

import pathlib

import numpy as np

from common.entities import CASE_FEATURES, CASE_INPUT, TAGS, WORD_FEATURES, WORD_HASHES, WORD_INPUT, WORD_ROWS
from sai.models import onnx_export, text_encoder
from sai.models.lora import LORA_RANK, base_layers, load_trained, lora_linear_class, replace_targets, trained_state

STATES, MASK, CASE, WORDS = text_encoder.STATES_OUTPUT, "attention_mask", CASE_INPUT, WORD_INPUT
INPUTS = (STATES, MASK, CASE, WORDS)
# The teacher's NER tok2vec (en_core_web_sm 3.8.0, config.cfg [components.ner.model.tok2vec]:
# spacy.MultiHashEmbed.v2 width 96 + spacy.MaxoutWindowEncoder.v2 depth 4, window 1, 3 pieces).
T2V_WIDTH, T2V_DEPTH, T2V_PIECES = 96, 4, 3
T2V_PAD = T2V_DEPTH  # its receptive field: window 1 per block
# Per piece the head sees the tok2vec vectors of its word and of the words either side. (The
# teacher's parser reads the current word, the open entity's first word and, inside an entity, the
# previous word: spaCy 3.8 spacy/pipeline/_parser_internals/_state.pxd, set_context_tokens, n == 3.)
FEATURES = CASE_FEATURES + 3 * T2V_WIDTH
OUTPUT = "probabilities"

__all__ = ["export_onnx", "make_head", "predict"]


def _shift(x, by: int):
    """x [n, words, d] moved `by` words along (+1: each word gets its left neighbour), zero-filled."""
    import torch

    zero = torch.zeros_like(x[:, : abs(by)])
    return torch.cat([zero, x[:, :-by]], 1) if by > 0 else torch.cat([x[:, -by:], zero], 1)


def _window(x):
    """Each word with its left and right neighbours, [n, words, 3 * d] (thinc expand_window(1))."""
    import torch

    return torch.cat([_shift(x, 1), x, _shift(x, -1)], -1)


def word_map(mask, case):
    """Which piece starts which word: A [n, slots, pieces] picks each word's first piece, B
    [n, pieces, slots] gives every piece its word's slot (none for [CLS], [SEP], padding and a
    window's leading word continuation), valid [n, slots, 1] marks slots holding a word. Word j is
    in slot T2V_PAD + j, so each text has T2V_PAD empty slots either side, as thinc pads the
    teacher's encoder (with_array(pad=receptive field)). Built from the mask and the continuation
    flag (case feature 3) with matrix products only, so it exports to ONNX."""
    import torch

    m = mask.to(case.dtype)
    after = torch.cat([m[:, 1:], torch.zeros_like(m[:, :1])], 1)  # 0 at [SEP]: the last real token
    inner = m * after * (torch.arange(m.shape[1]) > 0).to(m.dtype)  # neither [CLS] nor [SEP]
    start = inner * (1.0 - case[..., 3])
    slot = torch.cumsum(start, 1) - 1.0 + T2V_PAD
    slots = torch.arange(m.shape[1] + 2 * T2V_PAD).to(m.dtype)
    B = (slot[..., None] == slots).to(m.dtype) * inner[..., None]
    A = (B * start[..., None]).transpose(1, 2)
    return A, B, A.sum(-1, keepdim=True)


def tok2vec_class():
    """The teacher's NER tok2vec in PyTorch, word by word: each attribute's vector is the sum of its
    four hashed rows (thinc HashEmbed), the four are mixed by a maxout + layer norm, then four
    residual blocks each see a word and its neighbours (thinc expand_window). As in thinc, the
    padding either side of a text starts at zero and goes through the blocks like a word.
    Initialised from the teacher's weights (load_teacher), its output on a spaCy text equals the
    teacher's (tests/test_entities_training.py)."""
    import torch

    class Maxout(torch.nn.Module):
        # thinc Maxout(normalize=True): W [nO, nP, nI], the max over nP pieces, then LayerNorm(eps 1e-8).
        def __init__(self, n_in: int):
            super().__init__()
            self.W = torch.nn.Parameter(torch.zeros(T2V_WIDTH, T2V_PIECES, n_in))
            self.b = torch.nn.Parameter(torch.zeros(T2V_WIDTH, T2V_PIECES))
            torch.nn.init.normal_(self.W, std=n_in**-0.5)
            self.norm = torch.nn.LayerNorm(T2V_WIDTH, eps=1e-8)

        def forward(self, x):
            y = x @ self.W.reshape(-1, self.W.shape[-1]).T + self.b.reshape(-1)
            return self.norm(y.unflatten(-1, (T2V_WIDTH, T2V_PIECES)).amax(-1))

    class Tok2Vec(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.ModuleList(torch.nn.Embedding(n, T2V_WIDTH) for n in WORD_ROWS)
            for emb in self.embed:
                torch.nn.init.normal_(emb.weight, std=0.1)
            self.mix = Maxout(T2V_WIDTH * len(WORD_ROWS))
            self.blocks = torch.nn.ModuleList(Maxout(3 * T2V_WIDTH) for _ in range(T2V_DEPTH))

        def forward(self, words, A, valid):
            """words INT64 [n, pieces, WORD_FEATURES] -> FP32 [n, slots, T2V_WIDTH] (word_map's slots)."""
            rows = words.unflatten(-1, (len(WORD_ROWS), WORD_HASHES))  # [n, pieces, attribute, hash]
            x = torch.cat([emb(rows[..., i, :]).sum(-2) for i, emb in enumerate(self.embed)], -1)
            x = self.mix(A @ x) * valid
            for block in self.blocks:
                x = x + block(_window(x))
            return x

        def load_teacher(self, weights: dict[str, np.ndarray]):
            """`weights`: sai.models.entity_training.teacher_tok2vec(nlp), named as this module's state."""
            self.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})

    return Tok2Vec


def make_head(adapter: dict[str, np.ndarray] | None = None, rank: int = LORA_RANK, seed: int = 0, teacher=None):
    """The head as a PyTorch module; with `adapter` the trained values are loaded (and checked);
    `teacher`: the teacher's tok2vec weights to start from (training)."""
    import torch

    LoRALinear = lora_linear_class()
    Tok2Vec = tok2vec_class()

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = base_layers().requires_grad_(False)
            replace_targets(self.layers, lambda m: LoRALinear(m, rank))
            self.t2v = Tok2Vec()
            self.features_in = torch.nn.Linear(FEATURES, text_encoder.DIM)
            torch.nn.init.normal_(self.features_in.weight, std=0.02)
            torch.nn.init.zeros_(self.features_in.bias)
            self.dropout = torch.nn.Dropout(0.1)
            self.tags = torch.nn.Linear(text_encoder.DIM + FEATURES, len(TAGS))

        def forward(self, h, mask, case, words):
            """Tag logits [n, length, len(TAGS)]."""
            A, B, valid = word_map(mask, case)
            t = self.t2v(words, A, valid) * valid  # per word slot
            f = torch.cat([case, B @ _window(t)], dim=-1)  # per piece
            h = h + self.features_in(f)
            add = (1.0 - mask[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
            for layer in self.layers:
                out = layer(h, attention_mask=add)
                h = out[0] if isinstance(out, tuple) else out
            return self.tags(torch.cat([self.dropout(h), self.dropout(f)], dim=-1))

        def probabilities(self, h, mask, case, words):
            return torch.softmax(self(h, mask, case, words), dim=-1)

        def adapter(self) -> dict[str, np.ndarray]:
            """What gets committed. The tok2vec is most of it, so it is kept in FP16; it is rounded
            in place first, so this head, its export and a rebuild are one model."""
            for p in self.t2v.parameters():
                p.data = p.data.half().float()
            state = trained_state(self)
            return {k: v.astype(np.float16) if k.startswith("t2v.") else v for k, v in state.items()}

    torch.manual_seed(seed)
    head = Head()
    if teacher is not None:
        head.t2v.load_teacher(teacher)
    return load_trained(head, adapter)


def export_onnx(head, path: pathlib.Path) -> float:
    """Merge the LoRA factors, export, check against PyTorch; returns the max abs difference."""
    replace_targets(head.layers, lambda m: m.merged() if hasattr(m, "merged") else m)
    rng = np.random.default_rng(0)
    h = rng.standard_normal((3, 7, text_encoder.DIM)).astype(np.float32)
    mask = np.array([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5], np.int64)
    case = (rng.random((3, 7, CASE_FEATURES)) > 0.5).astype(np.float32)
    words = rng.integers(0, min(WORD_ROWS), (3, 7, WORD_FEATURES)).astype(np.int64)
    samples = [(h, mask, case, words), (h[:1, :5], mask[:1, :5], case[:1, :5], words[:1, :5])]
    axes = {name: {0: "batch", 1: "length"} for name in INPUTS}
    axes[OUTPUT] = {0: "batch", 1: "length"}
    return onnx_export.export_checked(head.eval(), "entity_head", samples, INPUTS, OUTPUT, axes, path, mask_arg=1)


def session_options(threads: int = 0):
    """onnxruntime options for shared CPUs: no spinning (other processes need the cores)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


class Pipeline:
    """The served path in-process: text_encoder then entity_head, both exported graphs, fed by
    common.entities (windows, case features, decoding), as the function feeds Triton."""

    def __init__(self, encoder_path: pathlib.Path, head_path: pathlib.Path, threads: int = 0, options=None):
        """`options`: onnxruntime SessionOptions for (encoder, head); default session_options(threads)."""
        import onnxruntime as ort

        enc_opts, head_opts = options or (session_options(threads), session_options(threads))
        self.encoder = ort.InferenceSession(str(encoder_path), enc_opts, providers=["CPUExecutionProvider"])
        self.head = ort.InferenceSession(str(head_path), head_opts, providers=["CPUExecutionProvider"])

    def infer(self, feeds: dict[str, np.ndarray]):
        enc = {k: feeds[k] for k in text_encoder.INPUTS}
        states = self.encoder.run([STATES], enc)[0]
        probs = self.head.run([OUTPUT], {STATES: states, **{k: feeds[k] for k in INPUTS[1:]}})[0]
        return probs, "local"

    def entities(self, texts: list[str], batch: int = 32) -> list[list[dict]]:
        from common.entities import extract

        return extract(texts, self.infer, batch)[0]


def predict(encoder_path: pathlib.Path, head_path: pathlib.Path, texts: list[str]) -> list[list[dict]]:
    return Pipeline(encoder_path, head_path).entities(texts)
