"""The entity head as a network: a token classifier on the shared `text_encoder`, its adapter (what
training changed) and the ONNX export Triton serves.

Like sentiment_head it continues the encoder's token states after layer 4 (`token_states`) with
copies of MiniLM's layers 5 and 6 carrying LoRA factors. The encoder is uncased, so the head also
takes, per token, computed by the function from the original text (common/entities.py):
`case_features` (starts upper-case, all upper-case, digit, word continuation) and `word_features`
(the word's rows in the teacher's four hashed tables: NORM, PREFIX, SUFFIX, SHAPE, four rows each),
which it embeds as the teacher does: one table per attribute, a word's vector the sum of its rows
(WORD_DIM each). Both are projected into the states before layers 5-6 (so attention can use
them) and given to the classifier again.

The ONNX graph: inputs `token_states` FP32 [batch, length, 384], `attention_mask` INT64
[batch, length], `case_features` FP32 [batch, length, 4], `word_features` INT64 [batch, length, 16];
output `probabilities` FP32 [batch, length, len(TAGS)], softmax over BIO tags
(common.entities.TAGS, labels.txt).
Training and its reasons: sai/models/entities.py.
"""

from __future__ import annotations

import pathlib

import numpy as np

from common.entities import CASE_FEATURES, CASE_INPUT, TAGS, WORD_FEATURES, WORD_HASHES, WORD_INPUT, WORD_ROWS
from sai.models import onnx_export, text_encoder
from sai.models.sentiment_head import (
    LORA_RANK,
    _base_layers,
    _replace_targets,
    adapter_sha256,
    load_adapter,
    load_trained,
    lora_linear_class,
    trained_state,
)

STATES, MASK, CASE, WORDS = text_encoder.STATES_OUTPUT, "attention_mask", CASE_INPUT, WORD_INPUT
INPUTS = (STATES, MASK, CASE, WORDS)
WORD_DIM = 64  # per word attribute: the embeddings are most of the adapter (WORD_ROWS rows each)
OUTPUT = "probabilities"
ADAPTER = "adapter.npz"
FINE_TUNED = f"layers {text_encoder.STATES_LAYER + 1}-6"

__all__ = ["ADAPTER", "adapter_sha256", "export_onnx", "load_adapter", "make_head", "predict"]


def make_head(adapter: dict[str, np.ndarray] | None = None, rank: int = LORA_RANK, seed: int = 0):
    """The head as a PyTorch module; with `adapter` the trained values are loaded (and checked)."""
    import torch

    LoRALinear = lora_linear_class()

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = _base_layers().requires_grad_(False)
            _replace_targets(self.layers, lambda m: LoRALinear(m, rank))
            self.words = torch.nn.ModuleList(torch.nn.Embedding(n, WORD_DIM) for n in WORD_ROWS)
            for emb in self.words:
                torch.nn.init.normal_(emb.weight, std=0.1)
            features = CASE_FEATURES + WORD_DIM * len(WORD_ROWS)
            self.features_in = torch.nn.Linear(features, text_encoder.DIM)
            torch.nn.init.normal_(self.features_in.weight, std=0.02)
            torch.nn.init.zeros_(self.features_in.bias)
            self.dropout = torch.nn.Dropout(0.1)
            self.tags = torch.nn.Linear(text_encoder.DIM + features, len(TAGS))

        def forward(self, h, mask, case, words):
            """Tag logits [n, length, len(TAGS)]."""
            rows = words.unflatten(-1, (len(WORD_ROWS), WORD_HASHES))  # [n, length, attribute, hash]
            f = torch.cat([case] + [emb(rows[..., i, :]).sum(-2) for i, emb in enumerate(self.words)], dim=-1)
            h = h + self.features_in(f)
            add = (1.0 - mask[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
            for layer in self.layers:
                out = layer(h, attention_mask=add)
                h = out[0] if isinstance(out, tuple) else out
            return self.tags(torch.cat([self.dropout(h), self.dropout(f)], dim=-1))

        def probabilities(self, h, mask, case, words):
            return torch.softmax(self(h, mask, case, words), dim=-1)

        def adapter(self) -> dict[str, np.ndarray]:
            """What gets committed. The word embeddings are most of it, so they are kept in FP16; they
            are rounded in place first, so this head, its export and a rebuild are one model."""
            for emb in self.words:
                emb.weight.data = emb.weight.data.half().float()
            state = trained_state(self)
            return {k: v.astype(np.float16) if k.startswith("words.") else v for k, v in state.items()}

    torch.manual_seed(seed)
    return load_trained(Head(), adapter)


def export_onnx(head, path: pathlib.Path) -> float:
    """Merge the LoRA factors, export, check against PyTorch; returns the max abs difference."""
    _replace_targets(head.layers, lambda m: m.merged() if hasattr(m, "merged") else m)
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
