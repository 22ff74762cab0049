"""The sentiment head as a network: its inputs, the PyTorch module that training fits, the adapter
(what training changed) and the ONNX export Triton serves.

It continues the shared `text_encoder`. It takes the token states after layer 4 of 6
(`token_states`), runs copies of MiniLM's layers 5 and 6 with LoRA factors, and pools them. Two
small linear heads sit on top: the sentiment logit, and which of the four domains the text looks
like. A logistic *stack* then combines the sentiment logit with VADER's lexicon score of the text
(the `lexicon` input, computed by the function with `common.lexicon.lexicon_scores`), each also
multiplied by the tweet probability.

The ONNX graph: inputs `token_states` FP32 [batch, length, 384], `attention_mask` INT64
[batch, length], `lexicon` FP32 [batch, 1]; output `probabilities` FP32 [batch, 2] (negative,
positive). The LoRA layers and the adapter are shared with entity_head (lora.py); training and
its reasons: sai/models/sentiment_training.py.
"""

from __future__ import annotations

import pathlib

import numpy as np

from common import tokens
from sai.models import onnx_export, text_encoder
from sai.models.lora import LORA_RANK, base_layers, batches, load_trained, lora_linear_class, replace_targets, trained_state
from sai.models.rated_sentences import DOMAINS

LABELS = ("negative", "positive")
STATES, MASK, LEXICON = text_encoder.STATES_OUTPUT, "attention_mask", "lexicon"
INPUTS = (STATES, MASK, LEXICON)
OUTPUT = "probabilities"
TWEETS = list(DOMAINS).index("tweets")
MAX_TOKENS = tokens.max_tokens.default  # the functions' default


# ---------------------------------------------------------------- inputs: token states and lexicon


def lexicon_scores(texts: list[str]) -> np.ndarray:
    """The function's own lexicon feature (common/lexicon.py), so training and serving compute it alike."""
    from common.lexicon import lexicon_scores as scores

    return scores(texts, MAX_TOKENS)


class Encoder:
    """In-process onnxruntime run of the exported text_encoder (the graph Triton serves)."""

    def __init__(self, model_path: pathlib.Path, max_length: int = MAX_TOKENS):
        import onnxruntime as ort

        self.tok = text_encoder.load_tokenizer(max_length)
        self.sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])

    def states(self, texts: list[str], batch_size: int = 64, progress=None) -> list[np.ndarray]:
        """Each text's token states after layer STATES_LAYER, FP32 [its length, 384]."""
        out: list[np.ndarray] = [None] * len(texts)
        # Length-sorted batches pad far less, about 3x faster on this corpus.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            feeds = text_encoder.encode_batch(self.tok, [texts[i] for i in idx])
            states = self.sess.run([STATES], feeds)[0]
            for row, i in enumerate(idx):
                out[i] = states[row, : int(feeds[MASK][row].sum())].copy()
            if progress is not None and hasattr(progress, "update"):
                progress.update(len(idx))
        return out


def pad(states: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-padded FP32 [n, longest, 384] states and their INT64 attention mask."""
    longest = max(len(s) for s in states)
    h = np.zeros((len(states), longest, text_encoder.DIM), np.float32)
    mask = np.zeros((len(states), longest), np.int64)
    for i, s in enumerate(states):
        h[i, : len(s)], mask[i, : len(s)] = s, 1
    return h, mask


# ---------------------------------------------------------------- the head (PyTorch)


def make_head(adapter: dict[str, np.ndarray] | None = None, rank: int = LORA_RANK, seed: int = 0):
    """The head as a PyTorch module: base layers with LoRA factors, the linear heads and the stack.
    With `adapter` the trained values are loaded (and checked to be complete)."""
    import torch

    LoRALinear = lora_linear_class()

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = base_layers().requires_grad_(False)
            replace_targets(self.layers, lambda m: LoRALinear(m, rank))
            self.dropout = torch.nn.Dropout(0.1)
            self.sentiment = torch.nn.Linear(text_encoder.DIM, 2)
            self.domain = torch.nn.Linear(text_encoder.DIM, len(DOMAINS))
            # Stack weights over stack_features(); fitted after training (sentiment._fit_stack).
            self.register_buffer("stack_weight", torch.zeros(5))
            self.register_buffer("stack_bias", torch.zeros(1))

        def pooled(self, h, mask):
            add = (1.0 - mask[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
            for layer in self.layers:
                out = layer(h, attention_mask=add)
                h = out[0] if isinstance(out, tuple) else out
            m = mask.unsqueeze(-1).to(h.dtype)
            return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)

        def forward(self, h, mask):
            """Training outputs: sentiment logits [n, 2] and domain logits [n, 4]."""
            p = self.dropout(self.pooled(h, mask))
            return self.sentiment(p), self.domain(p)

        def stack_features(self, h, mask, lexicon):
            """[sentiment logit, lexicon, p(tweet), logit * p(tweet), lexicon * p(tweet)]."""
            sentiment, domain = self(h, mask)
            s = (sentiment[:, 1] - sentiment[:, 0]).unsqueeze(1)
            t = torch.softmax(domain, dim=1)[:, TWEETS : TWEETS + 1]
            return torch.cat([s, lexicon, t, s * t, lexicon * t], dim=1)

        def probabilities(self, h, mask, lexicon):
            z = self.stack_features(h, mask, lexicon) @ self.stack_weight + self.stack_bias
            # softmax([0, z]) == [1 - sigmoid(z), sigmoid(z)]: the order of labels.txt
            return torch.softmax(torch.stack([torch.zeros_like(z), z], dim=1), dim=1)

        def adapter(self) -> dict[str, np.ndarray]:
            return trained_state(self)

    torch.manual_seed(seed)
    return load_trained(Head(), adapter)


def export_onnx(head, path: pathlib.Path) -> float:
    """Merge the LoRA factors, export the served graph, check it against PyTorch. Returns the max
    abs difference of the probabilities."""
    replace_targets(head.layers, lambda m: m.merged() if hasattr(m, "merged") else m)
    rng = np.random.default_rng(0)
    sample = [rng.standard_normal((3, 7, text_encoder.DIM)).astype(np.float32) for _ in range(2)]
    mask = np.array([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5], np.int64)
    lex = np.array([[0.5], [-0.7], [0.0]], np.float32)
    samples = [(sample[0], mask, lex), (sample[1][:1, :5], mask[:1, :5], lex[:1])]
    axes = {STATES: {0: "batch", 1: "length"}, MASK: {0: "batch", 1: "length"}, LEXICON: {0: "batch"}, OUTPUT: {0: "batch"}}
    return onnx_export.export_checked(head.eval(), "sentiment_head", samples, INPUTS, OUTPUT, axes, path)


def head_predict(head_path: pathlib.Path, states: list[np.ndarray], lexicon: np.ndarray) -> np.ndarray:
    """Probabilities from the exported graph (what Triton serves), in input order."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(head_path), providers=["CPUExecutionProvider"])
    out = np.zeros((len(states), len(LABELS)), np.float32)
    for idx in batches(len(states), [len(s) for s in states], 64):
        h, mask = pad([states[i] for i in idx])
        out[idx] = sess.run([OUTPUT], {STATES: h, MASK: mask, LEXICON: lexicon[idx]})[0]
    return out
