"""`sai bench ...`: benchmarks that print figures and ratios against a baseline measured in the same run."""

from __future__ import annotations

from sai.bench import image, text


def register(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks (through the gateway vs in-process)")
    bsub = bench.add_subparsers(dest="bench_command", metavar="WHAT", required=True)
    image.register_commands(bsub)
    text.register_commands(bsub)
