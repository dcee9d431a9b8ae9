"""Rolling restart: every master, then every worker, restarted one at a time by a command of
yours, each waiting until its replacement has registered before the next one goes::

    python -m ops.rolling --command 'ssh {host} systemctl restart dagkeeper-{role}'
    python -m ops.rolling --command 'kill -TERM {pid}'      # a supervisor starts it again

A SIGTERM hands a master's instances to the others at once and drains a worker (running tasks
finish within worker.drain_deadline_s), so nothing fails and no retry is used. Placeholders:
{role} {id} {host} {pid}. Exit 0 when every daemon was replaced, 1 when one was not in time."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ROLES = ("master", "worker")


@dataclass(frozen=True)
class Target:
    role: str
    id: str
    host: str
    pid: int | None


def members(doc: dict[str, Any], role: str) -> dict[str, dict[str, Any]]:
    """Registered daemons of ``role`` in a status document (``ops.status.collect``), by id."""
    return {m["id"]: m for m in doc[f"{role}s"]}


def plan(doc: dict[str, Any], only: str | None = None) -> list[Target]:
    """Pure: masters first (each hands over to the others), then workers, each by id."""
    return [
        Target(role, m["id"], str(m.get("host") or ""), m.get("pid"))
        for role in ROLES
        if only in (None, role)
        for _, m in sorted(members(doc, role).items())
    ]


def replaced(target: Target, before: set[str], doc: dict[str, Any]) -> tuple[bool, str]:
    """Pure: is ``target`` gone and a new daemon of its role registered (serving: a worker not
    draining), so that the role is back to its number?"""
    now = members(doc, target.role)
    if target.id in now:
        return False, f"{target.role} {target.id} is still registered"
    serving = {i for i, m in now.items() if not m.get("draining")}
    if len(serving) < len(before):
        return False, f"{len(serving)} of {len(before)} {target.role}s registered"
    if not serving - before:
        return False, f"no new {target.role} registered yet"
    return True, f"{target.role} {target.id} replaced by {', '.join(sorted(serving - before))}"


def command_for(template: str, t: Target) -> list[str]:
    """The argv of the restart command (the template is split first: no shell, no injection)."""
    values = {"role": t.role, "id": t.id, "host": t.host, "pid": t.pid or ""}
    return [arg.format(**values) for arg in shlex.split(template)]


def run(
    collect: Callable[[], dict[str, Any]],
    template: str,
    only: str | None = None,
    timeout_s: float = 120.0,
    dry_run: bool = False,
    say: Callable[[str], None] = print,
) -> int:
    doc = collect()
    if not doc["zookeeper"]["ok"]:
        say(f"cannot read the cluster's members: {doc['zookeeper'].get('error')}")
        return 2
    targets = plan(doc, only)
    say(f"rolling restart of {len(targets)} daemon(s): {', '.join(t.id for t in targets)}")
    for t in targets:
        argv = command_for(template, t)
        say(f"{t.role} {t.id} (host {t.host}, pid {t.pid}): {shlex.join(argv)}")
        if dry_run:
            continue
        before = set(members(collect(), t.role))
        started = time.monotonic()
        res = subprocess.run(argv, check=False)
        if res.returncode != 0:
            say(f"the command exited {res.returncode}; stopping here")
            return 1
        why = ""
        while time.monotonic() - started < timeout_s:
            done, why = replaced(t, before, collect())
            if done:
                say(f"  {why} after {time.monotonic() - started:.1f}s")
                break
            time.sleep(0.25)
        else:
            say(f"  not replaced within {timeout_s:.0f}s ({why}); stopping here")
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ops.rolling", description=__doc__.split("::")[0])
    p.add_argument("--command", required=True, help="restart command; {role} {id} {host} {pid}")
    p.add_argument("--only", choices=ROLES, help="restart only the masters or the workers")
    p.add_argument("--timeout", type=float, default=120.0, help="per daemon, seconds (120)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run none")
    args = p.parse_args(argv)
    from ops.status import collect, settings_for_status

    settings, _ = settings_for_status()
    try:
        return run(
            lambda: collect(settings, api=False),
            args.command,
            args.only,
            args.timeout,
            args.dry_run,
            lambda line: print(line, flush=True),
        )
    except (KeyError, IndexError, ValueError) as exc:
        print(f"rolling restart: --command: bad placeholder {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
