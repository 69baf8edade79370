"""`ywm`: the one command line for every process and operator task."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import uuid
from typing import Any

from server.platform import jsonenc, queue
from server.platform.logging import configure_logging
from server.platform.settings import Settings, SettingsError, deprecated_names

log = logging.getLogger("ywm.cli")


def _web(args: argparse.Namespace, settings: Settings) -> int:
    from server.main import run
    run(settings, args.port or settings.port, args.address or settings.bind)
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from db.migrate import ensure_database, upgrade
    url = settings.migrate_database_url or settings.database_url  # never through PgBouncer
    if not settings.production:  # production databases are provisioned, not guessed
        ensure_database(url)
    created = upgrade(url)
    # Members written before migration 0008 get their last-four hash (quick no-op later).
    indexed = _index_all_phones(settings, 500, url)
    print(f"ywm migrate: schema at head; {len(created)} partitions created; "
          f"{indexed} member phones indexed for search")
    return 0


def _db(args: argparse.Namespace, settings: Settings) -> int:
    from db.migrate import run_alembic
    return run_alembic(settings.migrate_database_url or settings.database_url, args.alembic_args)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from server.platform import tracing
    from workers import huey  # configured with these settings by main()
    tracing.configure(settings, "worker")  # off unless YWM_OTEL_ENDPOINT is set
    consumer = huey.create_consumer(
        workers=args.workers, worker_type="thread", periodic=not args.no_periodic,
        graceful_signal=args.graceful_signal, shutdown_timeout=args.grace,
        check_worker_health=True)
    try:
        consumer.run()
    finally:
        tracing.shutdown()  # export the spans still buffered
    return 0


def _carrier_sim(args: argparse.Namespace, settings: Settings) -> int:
    from server.carriers.simulator import serve_forever
    config = {"callback_base": args.callback_url or settings.public_url,
              "delivered_ratio": args.delivered_ratio, "rate_429": args.rate_429,
              "rate_5xx": args.rate_5xx, "latency_ms": args.latency_ms}
    try:
        asyncio.run(serve_forever(settings, args.port, args.address, **config))
    except KeyboardInterrupt:
        pass
    return 0


def _seed_demo(args: argparse.Namespace, settings: Settings) -> int:
    from server.devtools.dev import seed
    login = asyncio.run(seed(settings))
    state = "created" if login.created else "already there"
    print(f"ywm seed-demo: demo church {state}; sign in as {login.email} / {login.password}")
    return 0


def _dev(args: argparse.Namespace, settings: Settings) -> int:
    from server.devtools.dev import run_dev
    return run_dev(settings, args.port, args.sim_port, args.var_dir)


def _reset_metrics(args: argparse.Namespace, settings: Settings) -> int:
    from server.platform.metrics import reset_directory
    reset_directory(settings.metrics_directory)
    print(f"ywm reset-metrics: {settings.metrics_directory} emptied")
    return 0


def _rotate_keys(args: argparse.Namespace, settings: Settings) -> int:
    from db.engine import Database
    from server.platform.redis import client_for
    from server.services.key_rotation import rotate_keys

    async def run() -> dict[str, object]:
        db = await Database.connect(settings.database_url, maxsize=2)
        redis = client_for(settings)
        try:
            return await rotate_keys(db, settings, redis, args.batch_size)
        finally:
            await redis.aclose()
            await db.close()
    result = asyncio.run(run())
    print(f"ywm rotate-keys: {result['rotated']} member rows, "
          f"{result['recipients_rotated']} recipient rows and {result['events_rotated']} "
          f"values in events re-encrypted under key {result['key_id']}; "
          f"{result['caches_dropped']} cached values dropped; "
          f"{result['remaining']} still under older keys")
    return 0 if result["remaining"] == 0 else 1


def _index_all_phones(settings: Settings, batch_size: int, url: str | None = None) -> int:
    from db.engine import Database
    from server.services.phone_search import index_phones

    async def run() -> int:
        db = await Database.connect(url or settings.database_url, maxsize=2)
        try:
            return await index_phones(db, settings, batch_size)
        finally:
            await db.close()
    return asyncio.run(run())


def _index_phones(args: argparse.Namespace, settings: Settings) -> int:
    print(f"ywm index-phones: {_index_all_phones(settings, args.batch_size)} members made "
          "searchable by their last four digits")
    return 0


def _archive(args: argparse.Namespace, settings: Settings) -> int:
    from db.engine import Database
    from server.platform.errors import AppError
    from server.services import archive
    from server.services.archive_store import open_store

    async def run() -> list[Any]:
        db = await Database.connect(settings.database_url, maxsize=2)
        store = open_store(settings.archive_location)
        try:
            if args.retire:
                return await archive.apply_retention(db, store, settings.retention_months)
            return await archive.archive_month(db, store, archive.parse_month(args.month),
                                               args.church)
        finally:
            await db.close()
    try:
        done = asyncio.run(run())
    except AppError as exc:
        print(f"ywm archive: {exc.message}", file=sys.stderr)
        return 2
    if args.retire:
        print(f"ywm archive: dropped {', '.join(done) or 'nothing'}")
    else:
        print(f"ywm archive: {args.month} archived and verified for {len(done)} "
              f"church(es) in {settings.archive_location}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ywm", description="YWMessaging")
    commands = parser.add_subparsers(dest="command", required=True)
    web = commands.add_parser("web", help="serve REST, WebSockets and webhooks")
    web.add_argument("--port", type=int, default=0, help="default: $YWM_PORT or 8000")
    web.add_argument("--address", default="", help="default: $YWM_BIND or 127.0.0.1")
    web.set_defaults(run=_web)
    migrate = commands.add_parser("migrate", help="migrate to head and create partitions")
    migrate.set_defaults(run=_migrate)
    worker = commands.add_parser("worker", help="run a Huey consumer (threads)")
    # Four threads drained fastest on 2 cores (LIBRARIES.md §4f).
    worker.add_argument("--workers", "-w", type=int, default=4)
    worker.add_argument("--no-periodic", "-n", action="store_true",
                        help="do not schedule periodic tasks (run exactly one consumer without)")
    worker.add_argument("--graceful-signal", choices=("INT", "TERM"), default="INT",
                        help="the signal that finishes running tasks before exiting")
    worker.add_argument("--grace", type=float, default=30.0,
                        help="seconds a graceful stop waits for running tasks")
    worker.set_defaults(run=_worker)
    sim = commands.add_parser("carrier-sim", help="run the local Telnyx/Twilio simulator")
    sim.add_argument("--port", type=int, default=8900)
    sim.add_argument("--address", default="127.0.0.1")
    sim.add_argument("--callback-url", default="",
                     help="our server's base URL for webhooks (default: $YWM_PUBLIC_URL)")
    sim.add_argument("--delivered-ratio", type=float, default=1.0)
    sim.add_argument("--rate-429", type=float, default=0.0)
    sim.add_argument("--rate-5xx", type=float, default=0.0)
    sim.add_argument("--latency-ms", type=float, default=0.0)
    sim.set_defaults(run=_carrier_sim)
    seed = commands.add_parser("seed-demo", help="create the demo church (idempotent)")
    seed.set_defaults(run=_seed_demo)
    dev = commands.add_parser("dev", help="`make run`: migrate, seed, run everything")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--sim-port", type=int, default=8900)
    dev.add_argument("--var-dir", default="", help="runtime files (default: var/)")
    dev.set_defaults(run=_dev)
    db = commands.add_parser("db", help="any Alembic command, e.g. `ywm db check`")
    db.add_argument("alembic_args", nargs=argparse.REMAINDER)
    db.set_defaults(run=_db)
    reset = commands.add_parser(
        "reset-metrics", help="empty this box's metrics directory (before its processes start)")
    reset.set_defaults(run=_reset_metrics)
    rotate = commands.add_parser("rotate-keys",
                                 help="re-encrypt member fields under the newest field key")
    rotate.add_argument("--batch-size", type=int, default=500)
    rotate.set_defaults(run=_rotate_keys)
    index = commands.add_parser(
        "index-phones", help="hash the last four phone digits of members written before "
                             "that existed (after migration 0008; safe to re-run)")
    index.add_argument("--batch-size", type=int, default=500)
    index.set_defaults(run=_index_phones)
    archive = commands.add_parser(
        "archive", help="write a finished month to $YWM_ARCHIVE_URL and verify it")
    which = archive.add_mutually_exclusive_group(required=True)
    which.add_argument("--month", help="YYYY-MM")
    which.add_argument("--retire", action="store_true",
                       help="archive, verify, then drop the partitions past retention")
    archive.add_argument("--church", type=uuid.UUID, default=None,
                         help="one church's id (default: every church with rows that month)")
    archive.set_defaults(run=_archive)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"ywm: {exc}", file=sys.stderr)
        return 2
    jsonenc.use(settings.json_encoder)  # before anything writes JSON, log lines included
    configure_logging(settings.log_level)
    for warning in deprecated_names():
        log.warning("%s", warning)
    queue.configure(settings)  # the one Settings of this process, for Huey too
    return int(args.run(args, settings) or 0)


if __name__ == "__main__":
    sys.exit(main())
