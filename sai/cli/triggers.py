"""`sai publish TOPIC [MESSAGE]` and `sai db watch | unwatch | list`: try message topics and
database changes against the running platform (docs/triggers.md)."""

from __future__ import annotations

import asyncio
import pathlib
import sys

import nats.errors
import nats.js.errors
import psycopg

from sai import paths
from sai.local.triggers import postgres, topics
from sai.local.triggers.annotations import AnnotationError, check_annotations
from sai.sai_error import SaiError
from sai.state import make_private, read_pid, read_state

EXIT_NOT_RUNNING = 3


def register(sub) -> None:
    pub = sub.add_parser(
        "publish",
        help="publish a message on a topic: every function subscribed to it runs once with it",
        description="Publish MESSAGE (or standard input) on TOPIC through the running platform's NATS "
        "(JetStream). Each function whose `topic` annotation names TOPIC is called with the message as its body.",
    )
    pub.add_argument("topic")
    pub.add_argument("message", nargs="?", help="the message (default: read standard input)")
    pub.add_argument("--file", type=pathlib.Path, help="send this file's bytes as the message")
    pub.set_defaults(func=cmd_publish)

    db = sub.add_parser("db", help="turn rows changed in a PostgreSQL table into messages on a topic")
    dbsub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    watch = dbsub.add_parser(
        "watch",
        help="install a trigger on TABLE and relay its changes to TOPIC",
        description="Install (idempotently) the outbox table sai.outbox, the function sai.capture() and a "
        "row trigger on TABLE in the database DSN, and record the watch: the platform relays each change "
        'as {"table", "schema", "op", "row"[, "old"]} to TOPIC (within seconds when it runs; changes made '
        "while it is down wait in the outbox).",
    )
    unwatch = dbsub.add_parser("unwatch", help="drop the trigger and forget the watch")
    for p in (watch, unwatch):
        p.add_argument("dsn", help="PostgreSQL connection string, e.g. postgresql://user@localhost/shop")
        p.add_argument("table", help="NAME or SCHEMA.NAME")
        p.add_argument("--topic", required=True, help="the topic its changes are published to")
    watch.add_argument(
        "--on", default="insert", help="operations to relay, comma-separated: insert, update, delete (default: %(default)s)"
    )
    watch.set_defaults(func=cmd_watch)
    unwatch.set_defaults(func=cmd_unwatch)
    listing = dbsub.add_parser("list", help="the recorded watches")
    listing.set_defaults(func=cmd_list)


def _broker() -> tuple[str, str | None]:
    state_dir = paths.state_dir()
    state = read_state(state_dir)
    if read_pid(state_dir) is None or not state:
        raise SaiError("the platform is not running: start it with `sai up`", EXIT_NOT_RUNNING)
    triggers = state.get("triggers") or {}
    if not triggers.get("nats"):
        why = triggers.get("nats_error") or "no function has a `topic` annotation"
        raise SaiError(f"message topics are off: {why}", EXIT_NOT_RUNNING)
    token_file = triggers.get("nats_token")
    return triggers["nats"], pathlib.Path(token_file).read_text().strip() if token_file else None


def cmd_publish(args) -> int:
    try:
        check_annotations({"topic": args.topic})
    except AnnotationError as exc:
        raise SaiError(str(exc), 2) from None
    if args.file is not None:
        data = args.file.read_bytes()
    elif args.message is not None:
        data = args.message.encode()
    else:
        data = sys.stdin.buffer.read()
    url, token = _broker()

    async def send() -> int:
        nc = await topics.connect(url, token, "sai-publish")
        try:
            return await topics.publish(nc.jetstream(), args.topic, data)
        finally:
            await nc.close()

    try:
        seq = asyncio.run(send())
    except nats.js.errors.NoStreamResponseError:
        raise SaiError(f"no function subscribes to topic {args.topic!r} (see `sai status`)", 1) from None
    except (nats.errors.Error, OSError) as exc:
        raise SaiError(f"publishing to {url} failed: {type(exc).__name__} {exc}") from None
    print(f"published {len(data)} bytes on {args.topic} (message {seq}); `sai logs platform` shows each call")
    return 0


def _watch(args, ops=("insert",)) -> postgres.Watch:
    try:
        check_annotations({"topic": args.topic})
        watch = postgres.Watch(args.dsn, args.table, args.topic, ops)
        watch.table_sql()
    except (AnnotationError, postgres.WatchError) as exc:
        raise SaiError(str(exc), 2) from None
    return watch


def cmd_watch(args) -> int:
    state_dir = paths.state_dir()
    make_private(state_dir)  # the registry holds the DSN
    try:
        ops = postgres.check_ops([op.strip().lower() for op in args.on.split(",") if op.strip()])
    except postgres.WatchError as exc:
        raise SaiError(str(exc), 2) from None
    watch = _watch(args, ops)
    try:
        postgres.install(watch)
    except psycopg.Error as exc:
        raise SaiError(f"could not install the trigger on {watch.table}: {str(exc).strip()}") from None
    others = [w for w in postgres.load_watches(state_dir) if (w.dsn, w.table, w.topic) != (watch.dsn, watch.table, watch.topic)]
    postgres.save_watches(state_dir, [*others, watch])
    print(f"{watch.table}: {', '.join(op.upper() for op in ops)} -> topic {watch.topic}")
    if read_pid(state_dir) is None:
        print("the platform is not running: changes wait in sai.outbox until `sai up` relays them")
    return 0


def cmd_unwatch(args) -> int:
    state_dir = paths.state_dir()
    watch = _watch(args)
    try:
        postgres.uninstall(watch)
    except psycopg.Error as exc:
        raise SaiError(f"could not drop the trigger on {watch.table}: {str(exc).strip()}") from None
    kept = [w for w in postgres.load_watches(state_dir) if (w.dsn, w.table, w.topic) != (watch.dsn, watch.table, watch.topic)]
    postgres.save_watches(state_dir, kept)
    print(f"{watch.table}: no longer relayed to topic {watch.topic}")
    return 0


def cmd_list(args) -> int:
    for w in postgres.load_watches(paths.state_dir()):
        print(f"{w.table} ({', '.join(w.ops)}) -> {w.topic}   {postgres.redacted(w.dsn)}")
    return 0
