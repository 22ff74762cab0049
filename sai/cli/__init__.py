"""`sai` command line. Each command group lives in its own module here with a
`register(subparsers)` function that adds its parser and sets `func`; this file only wires them
together. The CLI drives sai.local (the runtime), sai.models, sai.bench and sai.k8s; none of them
imports the CLI."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings

from common import settings
from sai import __version__
from sai.sai_error import SaiError

# One module per command group; each adds its own sub-commands.
COMMAND_MODULES = [
    "sai.cli.lifecycle",  # up, down, status, logs
    "sai.cli.metrics",  # metrics
    "sai.cli.models",  # models build / add / train-sentiment / sentiment-report
    "sai.cli.new",  # new FUNCTION --from TEMPLATE
    "sai.cli.reload",  # reload (a running `sai up`)
    "sai.cli.bench",  # bench image / bench text
    "sai.cli.tools",  # tools install / path / validate
    "sai.cli.s3",  # s3 upload / s3 result
    "sai.cli.triggers",  # publish, db watch / unwatch / list
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


# Libraries that narrate the ONNX export (`sai models build`) line by line: with -v their messages
# show; without, only errors, so a build prints its progress bar and one line per model.
QUIET_LOGGERS = {"onnx_ir": logging.WARNING, "onnxscript": logging.WARNING, "torch.onnx": logging.ERROR}


def quiet_libraries() -> None:
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    # torch configures its own loggers when imported (later, in the build): TORCH_LOGS is how to
    # lower them ("-onnx": errors only); a value the user set wins.
    os.environ.setdefault("TORCH_LOGS", "-onnx")
    # torch's pytree deprecation (FutureWarning) fires inside the exporter, not in our code.
    warnings.filterwarnings("ignore", category=FutureWarning, module="copyreg")


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
    if not args.verbose:
        quiet_libraries()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except SaiError as exc:
        print(f"sai: error: {exc}", file=sys.stderr)
        return exc.exit_code
