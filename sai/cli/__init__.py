"""`sai` command line. Each command group lives in its own module here with a
`register(subparsers)` function that adds its parser and sets `func`; this file only wires them
together. The CLI drives sai.local (the runtime), sai.models, sai.bench and sai.k8s; none of them
imports the CLI."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from common import settings
from sai import __version__
from sai.errors import SaiError

# One module per command group; each adds its own sub-commands.
COMMAND_MODULES = [
    "sai.cli.platform",  # up, down, status, logs
    "sai.cli.models",  # models build / train-sentiment / sentiment-report
    "sai.cli.bench",  # bench image / bench text
    "sai.cli.tools",  # tools install / path / validate
    "sai.cli.s3",  # s3 upload / s3 result
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sai",
        description="Serverless AI: run the local platform, build models, benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"sai {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)  # parsers read settings for their defaults
        settings.check()
    except settings.SettingError as exc:
        print(f"sai: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except SaiError as exc:
        print(f"sai: error: {exc}", file=sys.stderr)
        return exc.exit_code
