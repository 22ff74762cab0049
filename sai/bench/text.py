"""`sai bench text`: text-embed and text-entities through the gateway vs the same models in-process,
same sentences.

In-process limit: the functions' own tokenisation (common/tokens.py; for text-entities also its
windows, case features and decoding, common/entities.py) + onnxruntime on the same ONNX files
(text_encoder; for text-entities text_encoder then entity_head) with the same session settings as
the local Triton configs, in one process, `concurrency` threads. Through the gateway: HTTP client ->
gateway -> text-embed -> Triton -> model, JSON embeddings back. Both closed-loop at each
concurrency, with requests of 1 and of 16 sentences; figures are sentences per second.
"""

from __future__ import annotations

import json

from sai import paths
from sai.bench.harness import Client, closed_loop, cpu_breakdown, cpu_seconds, fmt, median_run, platform_or, print_table
from sai.bench.image import local_config, onnx_session, session_options
from sai.sai_error import SaiError

# Review-, news- and chat-like sentences of 5 to 40 words, as the text functions typically see.
SENTENCES = [
    "The battery easily lasts two days, and the screen is bright enough to read in full sun.",
    "Terrible service: we waited an hour and the food arrived cold.",
    "The central bank left interest rates unchanged on Thursday, citing slowing inflation.",
    "can anyone recommend a good book for a long flight?",
    "Knative scales the predictor to zero when no requests arrive for a while.",
    "I loved the soundtrack but the plot fell apart in the second half.",
    "Heavy rain is expected across the region tonight, with local flooding possible.",
    "The update fixed the crash on startup, thanks to the team for the quick turnaround!",
    "Shares fell sharply after the company lowered its full-year revenue forecast.",
    "What a lovely surprise to see old friends at the station this morning.",
    "The recipe calls for two cups of flour, a pinch of salt and three eggs.",
    "Customer support never replied to my emails, so I am returning the product.",
    "Researchers found that the new vaccine reduced hospital admissions by half in older adults.",
    "meh, it works but nothing special",
    "The museum's new wing displays sculptures from the early Renaissance alongside modern installations that respond to them.",
    "Traffic on the bridge is backed up for three miles because of an accident in the left lane.",
]


# The performance targets (docs/performance.md): (function, texts per request, concurrency) -> lowest gateway/in-process ratio.
TARGETS = {("text-embed", 1, 4): 0.7, ("text-embed", 16, 4): 0.9}


def batches(size: int) -> list[list[str]]:
    """Requests of `size` sentences, cycling through SENTENCES so every request differs."""
    n = len(SENTENCES)
    return [[SENTENCES[(i * size + j) % n] for j in range(size)] for i in range(n)]


def _embed_work(reqs: list[list[str]]):
    from common import tokens

    # The same onnxruntime settings as Triton's onnx_local backend uses for this model.
    session = onnx_session(paths.model_repository() / "text_encoder")
    return lambda i, _: session.run(["embeddings"], tokens.tokenize(reqs[i % len(reqs)]).feeds)


def _entities_work(reqs: list[list[str]]):
    from sai.models.entity_head import Pipeline

    repo = paths.model_repository()
    pipe = Pipeline(
        repo / "text_encoder" / "1" / "model.onnx",
        repo / "entity_head" / "1" / "model.onnx",
        options=tuple(session_options(local_config(repo / name)) for name in ("text_encoder", "entity_head")),
    )
    return lambda i, _: pipe.entities(reqs[i % len(reqs)])


IN_PROCESS = {"text-embed": _embed_work, "text-entities": _entities_work}


def in_process(reqs: list[list[str]], concurrency: int, requests_n: int, function: str = "text-embed"):
    work = IN_PROCESS[function](reqs)

    size = len(reqs[0])
    closed_loop(work, concurrency, 10)  # warm-up
    return closed_loop(work, concurrency, requests_n, items_per_call=size)


def via_gateway(url: str, reqs: list[list[str]], concurrency: int, requests_n: int, function: str = "text-embed"):
    bodies = [json.dumps({"texts": texts}).encode() for texts in reqs]

    def work(i, client):
        status, body = client.post(f"/function/{function}", bodies[i % len(bodies)], "application/json")
        if status != 200:
            raise RuntimeError(f"{function} answered {status}: {body[:200]!r}")

    size = len(reqs[0])
    make_client = lambda: Client(url)  # noqa: E731
    closed_loop(work, concurrency, 10, make_state=make_client)  # warm-up
    return closed_loop(work, concurrency, requests_n, items_per_call=size, make_state=make_client)


def run(args) -> int:
    levels = [int(c) for c in args.concurrency.split(",")]
    sizes = [int(b) for b in args.batch.split(",")]
    functions = [f.strip() for f in args.functions.split(",") if f.strip()]
    unknown = sorted(set(functions) - set(IN_PROCESS))
    if unknown:
        raise SaiError(f"unknown function(s) {', '.join(unknown)}; choose from {', '.join(IN_PROCESS)}", exit_code=2)
    results = []
    with platform_or(args.gateway, only=functions) as (url, state):
        for function in functions:
            for size in sizes:
                reqs = batches(size)
                # Same sentence count per level whatever the batch size, so runs take similar time.
                n = max(10, args.sentences // size)
                for c in levels:
                    base = median_run([in_process(reqs, c, n, function) for _ in range(args.repeats)])
                    gw = median_run([via_gateway(url, reqs, c, n, function) for _ in range(args.repeats)])
                    results.append((function, size, c, base, gw))
                    print(
                        f"{function}, batch {size}, concurrency {c}: in-process {base.rate:.1f} sent/s, "
                        f"gateway {gw.rate:.1f} sent/s",
                        flush=True,
                    )
        if state is not None:  # where the CPU goes per request of one sentence at concurrency 4
            reqs, n = batches(1), args.sentences
            start = cpu_seconds()
            in_process(reqs, 4, n, functions[0])
            inproc_ms = (cpu_seconds() - start) * 1e3 / (n + 10)  # + its warm-up
            split = cpu_breakdown(lambda: via_gateway(url, reqs, 4, n, functions[0]), state, n + 10)
    rows = [
        [
            function,
            size,
            c,
            fmt(b.rate),
            fmt(g.rate),
            fmt(g.rate / b.rate, 2),
            fmt(g.percentile(50)),
            fmt(g.percentile(99)),
            fmt(b.percentile(50)),
        ]
        for function, size, c, b, g in results
    ]
    print()
    if state is not None:
        print(
            f"CPU per request of 1 sentence at concurrency 4 ({functions[0]}): in-process {inproc_ms:.1f} ms; through the "
            f"platform {sum(split.values()):.1f} ms = " + ", ".join(f"{k} {v:.1f}" for k, v in split.items() if v >= 0.05)
        )
        print(
            f"CPU-bound ceiling of the ratio (in-process CPU / platform CPU per request): {inproc_ms / sum(split.values()):.2f}"
        )
        print()
    print_table(
        [
            "function",
            "texts/request",
            "concurrency",
            "in-process sent/s",
            "gateway sent/s",
            "ratio",
            "gateway p50 ms",
            "gateway p99 ms",
            "in-process p50 ms",
        ],
        rows,
    )
    print()
    for function, size, c, b, g in results:
        target = TARGETS.get((function, size, c))
        if target is not None:
            got = g.rate / b.rate
            print(
                f"target: {function}, {size} text(s)/request, concurrency {c}: ratio >= {target}: {got:.2f} ({'met' if got >= target else 'NOT met'})"
            )
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "function": function,
                        "texts_per_request": size,
                        "concurrency": c,
                        "in_process_per_s": b.rate,
                        "gateway_per_s": g.rate,
                        "ratio": g.rate / b.rate,
                        "gateway_p50_ms": g.percentile(50),
                        "gateway_p99_ms": g.percentile(99),
                    }
                    for function, size, c, b, g in results
                ],
                indent=2,
            )
        )
    return 0
