"""Build hooks shared by the text heads whose trained adapter is committed (sentiment_head,
entity_head): `sai models build` merges `<head>/adapter.npz` into the base weights and exports
`<head>/1/model.onnx`; `1/build_report.json` records which adapter and encoder export it was built
from, so a retrained adapter or a changed encoder rebuilds."""

from __future__ import annotations

import json
import pathlib

from sai.models import text_encoder
from sai.models.lora import ADAPTER, FINE_TUNED, adapter_sha256, load_adapter


def build_report_path(head_dir: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(head_dir) / "1" / "build_report.json"


def write_build_report(head_dir: pathlib.Path, model: str, adapter: dict) -> None:
    body = {"model": model, "adapter_sha256": adapter_sha256(adapter), "encoder_export_version": text_encoder.EXPORT_VERSION}
    build_report_path(head_dir).write_text(json.dumps(body, indent=2) + "\n")


def is_built(repo_dir: pathlib.Path, model: str, ensemble: str) -> bool:
    head_dir = pathlib.Path(repo_dir) / model
    try:
        built = json.loads(build_report_path(head_dir).read_text())
        current = adapter_sha256(load_adapter(head_dir))
    except (OSError, ValueError):
        return False
    return (
        (head_dir / "1" / "model.onnx").is_file()
        and (pathlib.Path(repo_dir) / ensemble / "1").is_dir()
        and built.get("adapter_sha256") == current
        and built.get("encoder_export_version") == text_encoder.EXPORT_VERSION
    )


def load_for_build(repo_dir: pathlib.Path, model: str, ensemble: str, train_command: str) -> tuple[dict, dict]:
    """(adapter, TRAINING_REPORT.json) of the committed head, checked to belong together; makes the
    ensemble's (empty) version folder Triton needs."""
    head_dir = pathlib.Path(repo_dir) / model
    if not (head_dir / ADAPTER).is_file():
        raise FileNotFoundError(f"{head_dir / ADAPTER} is missing (it is committed): run `sai models {train_command}`")
    (pathlib.Path(repo_dir) / ensemble / "1").mkdir(parents=True, exist_ok=True)
    adapter = load_adapter(head_dir)
    saved = json.loads((head_dir / "TRAINING_REPORT.json").read_text())
    if saved.get("adapter_sha256") != adapter_sha256(adapter):
        raise RuntimeError(f"{head_dir / ADAPTER} is not the adapter TRAINING_REPORT.json describes")
    return adapter, saved


def export_committed(
    repo_dir: pathlib.Path, model: str, ensemble: str, train_command: str, head, progress=None
) -> tuple[float, dict]:
    """`sai models build` for a committed head (`head`: the sentiment_head or entity_head module):
    merge its adapter, export and check `<model>/1/model.onnx`, write the build report. Returns the
    max abs difference against PyTorch and the saved TRAINING_REPORT.json."""
    head_dir = pathlib.Path(repo_dir) / model
    adapter, saved = load_for_build(repo_dir, model, ensemble, train_command)
    text_encoder._step(progress, f"merging the committed adapter into MiniLM {FINE_TUNED}")
    diff = head.export_onnx(head.make_head(adapter), head_dir / "1" / "model.onnx")
    write_build_report(head_dir, model, adapter)
    return diff, saved
