"""What the two text heads (sentiment_head, entity_head) share: LoRA factors on copies of MiniLM's
layers after the encoder's STATES_LAYER, the adapter (what training changed) with its file and
content hash, and the length-bucketed batches both train and predict with.

LoRA: y = W x + (alpha / r) B A x with W frozen (Hu et al., 2021); the export folds B A into W, so
Triton serves plain Linear layers.
"""

from __future__ import annotations

import functools
import hashlib
import pathlib

import numpy as np

from sai.models import text_encoder

ADAPTER = "adapter.npz"  # in the head's model folder, committed
LORA_RANK = 16
LORA_ALPHA = 32
LORA_TARGETS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
FINE_TUNED = f"layers {text_encoder.STATES_LAYER + 1}-6"  # for messages and reports


def batches(n: int, lengths, size: int, rng=None):
    """Index batches of about equal length (little padding); shuffled when given an rng."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    out = []
    for chunk in (order[i : i + size * 50] for i in range(0, n, size * 50)):
        chunk = sorted(chunk, key=lambda i: lengths[i])
        out += [chunk[i : i + size] for i in range(0, len(chunk), size)]
    if rng is not None:
        rng.shuffle(out)
    return out


def base_layers():
    """Copies of MiniLM's layers after STATES_LAYER, from the package's weights."""
    import transformers
    from transformers import BertModel

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    bert = BertModel.from_pretrained(str(text_encoder.package_dir()), add_pooling_layer=False, attn_implementation="eager")
    return bert.encoder.layer[text_encoder.STATES_LAYER :]


def replace_targets(layers, replace) -> None:
    """Swap each LORA_TARGETS Linear of each layer for `replace(module)`, layer by layer."""
    for layer in layers:
        for target in LORA_TARGETS:
            parent_name, _, name = target.rpartition(".")
            parent = layer.get_submodule(parent_name)
            setattr(parent, name, replace(getattr(parent, name)))


@functools.cache
def lora_linear_class():
    """The LoRA wrapper both text heads use: y = W x + (alpha / r) B A x with W frozen; `merged()`
    folds it into one Linear for export. Its parameters are `a`, `b` (what the adapter keeps)."""
    import torch

    class LoRALinear(torch.nn.Module):
        def __init__(self, base: torch.nn.Linear, rank: int = LORA_RANK, alpha: int = LORA_ALPHA):
            super().__init__()
            self.base = base.requires_grad_(False)
            self.a = torch.nn.Parameter(torch.randn(rank, base.in_features) * 0.01)
            self.b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
            self.scale = alpha / rank

        def forward(self, x):
            return self.base(x) + (x @ self.a.T @ self.b.T) * self.scale

        def merged(self) -> torch.nn.Linear:
            lin = torch.nn.Linear(self.base.in_features, self.base.out_features)
            with torch.no_grad():
                lin.weight.copy_(self.base.weight + self.scale * self.b @ self.a)
                lin.bias.copy_(self.base.bias)
            return lin

    return LoRALinear


def trained_state(head) -> dict[str, np.ndarray]:
    """What training changed (the adapter): everything but the frozen base weights of `layers`."""
    return {
        k: v.detach().numpy().copy()
        for k, v in head.state_dict().items()
        if k.endswith((".a", ".b")) or not k.startswith("layers.")
    }


def load_trained(head, adapter: dict[str, np.ndarray] | None):
    """`head` with the trained values of `adapter` loaded (checked to be complete); as is if None."""
    import torch

    if adapter is not None:
        state = {k: torch.from_numpy(np.asarray(v)) for k, v in adapter.items()}
        _, unexpected = head.load_state_dict(state, strict=False)
        expected = set(trained_state(head))
        if unexpected or expected - set(state):
            raise ValueError(
                f"adapter does not fit the head: missing {sorted(expected - set(state))[:3]}, unexpected {unexpected[:3]}"
            )
    return head


def adapter_sha256(adapter: dict[str, np.ndarray]) -> str:
    """Content hash (np.savez files carry timestamps, so the file hash would not be stable)."""
    digest = hashlib.sha256()
    for key in sorted(adapter):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(adapter[key], dtype=np.float32).tobytes())
    return digest.hexdigest()


def load_adapter(head_dir: pathlib.Path) -> dict[str, np.ndarray]:
    with np.load(pathlib.Path(head_dir) / ADAPTER) as data:
        return {k: data[k] for k in data.files}
