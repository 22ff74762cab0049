"""`sai bench ...`: benchmarks that print figures and ratios against a baseline measured in the same run."""

from __future__ import annotations


def register(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks (through the gateway vs in-process)")
    bsub = bench.add_subparsers(dest="bench_command", metavar="WHAT", required=True)
    from sai.bench import image

    image.register_commands(bsub)
    try:
        from sai.bench import text
    except ImportError:
        return
    text.register_commands(bsub)
