"""`sai models ...`: build the model repository (and, from the text models, train and report)."""

from __future__ import annotations

import json

from sai import paths
from sai.cli import SaiError


def register(sub) -> None:
    models = sub.add_parser("models", help="build and inspect the model repository")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    build = msub.add_parser("build", help="export the pretrained models to model_repository/ (offline)")
    build.add_argument("names", nargs="*", help="only these models (default: all)")
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")
    build.add_argument("--json", action="store_true", help="print the build reports as JSON")
    build.set_defaults(func=cmd_build)

    from sai.models import sentiment

    sentiment.register_commands(msub)


def cmd_build(args) -> int:
    from sai.models.build import build_all

    try:
        reports = build_all(paths.model_repository(), args.names or None, args.force)
    except ValueError as exc:
        raise SaiError(str(exc), exit_code=2) from exc
    if args.json:
        print(json.dumps(reports, indent=2))
    return 0
