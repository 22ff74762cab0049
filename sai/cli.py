"""`sai` command line. Each command group lives in its own module with a `register(subparsers)`
function that adds its parser and sets `func`; this file only wires them together."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from sai import __version__

# One module per command group; each adds its own sub-commands.
COMMAND_MODULES = [
    "sai.platform_cli",  # up, down, status, logs
    "sai.models.cli",  # models build / train-sentiment / report
    "sai.bench.cli",  # bench image / bench text
    "sai.k8s_tools",  # tools install / tools path
    "sai.objectstore",  # s3 upload / s3 result
    "sai.cluster.cli",  # cluster install / status / wait / coldstart / models push / uninstall
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
    args = build_parser().parse_args(argv)
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


class SaiError(Exception):
    """An expected failure: printed without a traceback, with a meaningful exit code."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
