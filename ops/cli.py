"""The ``dagkeeper`` console script: one sub-command per daemon plus operator tools; every other
sub-command is the client CLI's (``dagkeeper.cli``). Modules are imported lazily so that each
host loads only what it runs and the client's ``--help`` stays fast."""

from __future__ import annotations

import argparse
import json
import sys

# sub-commands handled here; everything else goes to the client CLI
DAEMON_COMMANDS = frozenset({"master", "worker", "api", "migrate", "doctor", "standalone"})


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


def cmd_worker(_: argparse.Namespace) -> int:
    from worker.daemon import run

    return run(_settings())


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

    return main(_settings(), demo=args.demo, exit_after_demo=args.exit_after_demo)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dagkeeper",
        description="dagkeeper: a decentralized DAG workflow scheduler. Settings come from "
        "DAGKEEPER_* environment variables (see the README).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("master", help="run a master daemon").set_defaults(func=cmd_master)
    sub.add_parser("worker", help="run a worker daemon").set_defaults(func=cmd_worker)
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
    sp.set_defaults(func=cmd_standalone)
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
