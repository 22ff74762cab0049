"""`sai bench image | text | startup | coldstart | scaling | overload`: benchmarks that print figures and ratios against a baseline measured
in the same run."""

from __future__ import annotations

import argparse

from sai.bench import cold_starts, image, overload, scaling, startup, text


def register(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks (through the gateway vs in-process)")
    bsub = bench.add_subparsers(dest="bench_command", metavar="WHAT", required=True)
    _register_image(bsub)
    _register_text(bsub)
    p = bsub.add_parser("startup", help="seconds until ready and memory, --only image-classify and the whole platform")
    p.add_argument("--repeats", type=int, default=3, help="starts per platform; medians reported (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    p.set_defaults(func=startup.run)
    p = bsub.add_parser(
        "coldstart",
        help="seconds to the answer from zero, per function, with its model unloaded and loaded",
    )
    p.add_argument("--functions", default=cold_starts.FUNCTIONS, help="comma-separated (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="cold starts per function and case; medians (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    p.set_defaults(func=cold_starts.run)
    p = bsub.add_parser("scaling", help="image-classify scaling out under load, back to zero, and no call lost while it does")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients of the load phases (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=20, help="length of each load phase (default: %(default)s)")
    p.add_argument("--trickle", type=int, default=30, help="calls of the trickle across scale-downs (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    p.set_defaults(func=scaling.run)
    p = bsub.add_parser(
        "overload", help="31 MB body flood (gateway RSS) and 256 concurrent clients (status codes)", add_help=False
    )
    p.add_argument("args", nargs=argparse.REMAINDER, help="options of sai/bench/overload.py (--help lists them)")
    p.set_defaults(func=lambda args: overload.main(args.args))


def _register_image(bench_sub) -> None:
    p = bench_sub.add_parser("image", help="image-classify via the gateway vs in-process onnxruntime")
    p.add_argument("--gateway", help="a running gateway URL (default: start a platform for the run)")
    p.add_argument("--concurrency", default="1,4,8", help="comma-separated levels (default: %(default)s)")
    p.add_argument(
        "--replicas",
        help="comma-separated replica counts of image-classify to measure, scaled through the API, e.g. 1,2 "
        "(default: as deployed)",
    )
    p.add_argument("--requests", type=int, default=200, help="requests per level and run (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="runs per level; the median is reported (default: %(default)s)")
    p.add_argument(
        "--compare",
        action="store_true",
        help="also serve the same ONNX file from one plain aiohttp process (same preprocessing) and report the gateway's ratio to it",
    )
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    p.set_defaults(func=image.run)


def _register_text(bench_sub) -> None:
    p = bench_sub.add_parser(
        "text",
        help="text-embed and text-entities via the gateway vs in-process onnxruntime (sentences/s)",
        description="Sentences per second through the gateway (text-embed -> Triton text_encoder; "
        "text-entities -> Triton text_entities) next to the in-process limit (same tokenisation + "
        "onnxruntime on the same ONNX files), for each function, request size and concurrency, with the ratio.",
    )
    p.add_argument(
        "--functions",
        default="text-embed,text-entities",
        help="comma-separated functions to measure (default: %(default)s)",
    )
    p.add_argument(
        "--gateway",
        help="a running gateway URL, e.g. http://127.0.0.1:8080 after `sai up` "
        "(default: start a platform with the measured functions for the run)",
    )
    p.add_argument("--concurrency", default="1,4,8", help="comma-separated levels (default: %(default)s)")
    p.add_argument("--batch", default="1,16", help="comma-separated texts per request (default: %(default)s)")
    p.add_argument("--sentences", type=int, default=400, help="sentences per level and run (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="runs per level; the median is reported (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    p.set_defaults(func=text.run)
