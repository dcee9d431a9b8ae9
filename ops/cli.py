"""The ``dagkeeper`` console script: one sub-command per daemon plus operator tools; every other
sub-command is the client CLI's (``dagkeeper.cli``). Modules are imported lazily so that each
host loads only what it runs and the client's ``--help`` stays fast."""

from __future__ import annotations

import argparse
import json
import sys

# sub-commands handled here; everything else goes to the client CLI
DAEMON_COMMANDS = frozenset(
    {"master", "worker", "api", "migrate", "doctor", "standalone", "purge", "status"}
)


def _settings():  # type: ignore[no-untyped-def]
    from pydantic import ValidationError as PydanticValidationError

    from core.settings import Settings

    try:
        return Settings()
    except PydanticValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        print("dagkeeper: invalid settings (DAGKEEPER_* environment):", file=sys.stderr)
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None


def cmd_master(_: argparse.Namespace) -> int:
    from master.daemon import run

    return run(_settings())


def cmd_worker(args: argparse.Namespace) -> int:
    if args.action == "drain":
        return cmd_drain(args)
    from worker.daemon import run

    return run(_settings())


def cmd_drain(args: argparse.Namespace) -> int:
    """``dagkeeper worker drain <id> [--deadline S] [--wait] [--cancel]`` through ZooKeeper."""
    from ops.drain import main

    if not args.worker_id:
        print("dagkeeper worker drain: name the worker id (see dagkeeper status)", file=sys.stderr)
        return 2
    return main(_settings(), args.worker_id, args.deadline, args.wait, args.cancel)


def cmd_purge(args: argparse.Namespace) -> int:
    from ops.purge import main

    return main(_settings(), args.older_than, args.workflow, args.dry_run, args.batch, args.json)


def cmd_status(args: argparse.Namespace) -> int:
    from pydantic import ValidationError as PydanticValidationError

    from ops.status import main, settings_for_status

    try:
        settings, api_url = settings_for_status()
    except PydanticValidationError:
        settings, api_url = _settings(), None  # says what is wrong and exits
    return main(settings, api_url, args.json, args.min_masters, args.min_workers, args.wait)


def cmd_api(_: argparse.Namespace) -> int:
    from api.server import main

    return main(_settings())


def cmd_migrate(_: argparse.Namespace) -> int:
    from ops.bootstrap import ensure_admin
    from ops.migrate import upgrade_head

    settings = _settings()
    try:
        upgrade_head(settings.db)
        print("dagkeeper migrate: schema is at the newest revision")
        ensure_admin(settings, lambda line: print(f"dagkeeper migrate: {line}"))
    except Exception as exc:  # report, never a stack trace, for an operator command
        print(f"dagkeeper migrate: failed: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from coord.zk import ZkClient
    from core.errors import CoordinationUnavailable
    from db.engine import make_engine, make_session_factory
    from ops import doctor, doctor_waiting

    settings = _settings()
    engine = make_engine(settings.db, pool_size=1)
    zk = ZkClient(settings.zk, name="doctor")
    try:
        zk.start()
        findings, fixed = doctor.run(make_session_factory(engine), zk, args.repair)
        waits = doctor_waiting.long_waits(make_session_factory(engine), zk, args.waiting_over,
                                          settings.master.queue_high_water)  # fmt: skip
    except CoordinationUnavailable as exc:
        print(f"dagkeeper doctor: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # an operator command reports, never a stack trace
        print(f"dagkeeper doctor: cannot check the cluster: {exc}", file=sys.stderr)
        return 2
    finally:
        zk.stop()
        engine.dispose()
    if args.json:  # the findings' document, with the long waits beside them
        doc = json.loads(doctor.report(findings, fixed, True))
        print(json.dumps(doc | {"waiting": doctor_waiting.as_dicts(waits)}, indent=2))
    else:
        print(doctor.report(findings, fixed, False))
        print(doctor_waiting.report(waits, args.waiting_over))
    return doctor.exit_code(findings, args.repair)


def cmd_standalone(args: argparse.Namespace) -> int:
    from ops.standalone import main

    settings = _settings()
    if args.reset:
        from core.errors import ConfigError
        from ops.reset import reset

        try:
            removed = reset(settings)
        except ConfigError as exc:
            print(f"dagkeeper standalone: {exc.message}", file=sys.stderr)
            return 2
        print(
            f"dagkeeper standalone: --reset removed {len(removed)} entries of {settings.data_path}"
        )
    return main(settings, demo=args.demo, exit_after_demo=args.exit_after_demo)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dagkeeper",
        description="dagkeeper: a decentralized DAG workflow scheduler. Settings come from "
        "DAGKEEPER_* environment variables (see the README).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("master", help="run a master daemon").set_defaults(func=cmd_master)
    wp = sub.add_parser(
        "worker",
        help="run a worker daemon; `worker drain <id>` drains a running one",
        description="Without arguments: run a worker daemon. `dagkeeper worker drain <id>`: ask "
        "that worker (through ZooKeeper) to claim nothing new and let its running tasks finish "
        "(the rest are handed over after the deadline); --cancel lets it claim again.",
    )
    wp.add_argument("action", nargs="?", choices=["drain"], help="drain a running worker")
    wp.add_argument("worker_id", nargs="?", help="the worker's id (dagkeeper status lists them)")
    wp.add_argument("--deadline", type=float, metavar="SECONDS",
                    help="its running tasks' deadline (default: its worker.drain_deadline_s)")  # fmt: skip
    wp.add_argument("--wait", action="store_true", help="wait until nothing runs on it")
    wp.add_argument("--cancel", action="store_true", help="withdraw the request: claim again")
    wp.set_defaults(func=cmd_worker)
    sub.add_parser("api", help="run the REST API server").set_defaults(func=cmd_api)
    sub.add_parser("migrate", help="create or upgrade the database schema").set_defaults(
        func=cmd_migrate
    )
    dp = sub.add_parser("doctor", help="check PostgreSQL against ZooKeeper; --repair fixes drift")
    dp.add_argument("--repair", action="store_true", help="fix what is safe to fix")
    dp.add_argument("--json", action="store_true", help="print the findings as JSON")
    dp.add_argument("--waiting-over", type=float, default=600.0, metavar="SECONDS",
                    help="report tasks waiting longer than this, with their reasons (600)")  # fmt: skip
    dp.set_defaults(func=cmd_doctor)
    sp = sub.add_parser(
        "standalone",
        help="run PostgreSQL, ZooKeeper, a master, a worker and the API on this machine",
    )
    sp.add_argument("--demo", action="store_true", help="submit and run the demo workflow")
    sp.add_argument(
        "--exit-after-demo", action="store_true", help="stop everything once the demo ends"
    )
    sp.add_argument("--reset", action="store_true",
                    help="wipe the data dir's cluster first (databases, logs, tokens)")  # fmt: skip
    sp.set_defaults(func=cmd_standalone)
    pp = sub.add_parser("purge", help="delete finished instances older than an age, in batches")
    pp.add_argument("--older-than", required=True, metavar="AGE",
                    help="30d, 12h, 90m, 3600s or 2w: instances that ended before now - AGE")  # fmt: skip
    pp.add_argument("--workflow", metavar="NAME", help="only this workflow's instances")
    pp.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
    pp.add_argument("--batch", type=int, default=2000, metavar="ROWS",
                    help="most rows (instances and attempts) per transaction (2000)")  # fmt: skip
    pp.add_argument("--json", action="store_true", help="print the counts as JSON")
    pp.set_defaults(func=cmd_purge)
    st = sub.add_parser("status", help="what runs where: masters, workers, servers, API")
    st.add_argument("--json", action="store_true", help="print the status as JSON")
    st.add_argument("--min-masters", type=int, default=0, metavar="N",
                    help="exit 1 unless at least N masters are registered")  # fmt: skip
    st.add_argument("--min-workers", type=int, default=0, metavar="N",
                    help="exit 1 unless at least N workers (not draining) are registered")  # fmt: skip
    st.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                    help="wait up to this long for the minimums")  # fmt: skip
    st.set_defaults(func=cmd_status)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in DAEMON_COMMANDS:
        from dagkeeper.cli import main as client_main

        return client_main(argv)
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
