"""``dagkeeper worker drain <id> [--deadline S] [--wait] [--cancel]``: write (or withdraw) a
worker's drain request in ZooKeeper (``coord.drain``); with ``--wait``, wait until the worker
runs nothing (its running tasks finished, or were handed over at the deadline)."""

from __future__ import annotations

import sys
import time

from core.settings import Settings

WAIT_GRACE_S = 30.0  # --wait gives up this long after the deadline


def main(
    settings: Settings,
    worker_id: str,
    deadline_s: float | None = None,
    wait: bool = False,
    cancel: bool = False,
) -> int:
    """0 done; 1 the worker is not registered or --wait timed out; 2 no ZooKeeper."""
    from coord import drain, membership
    from coord.zk import ZkClient

    say = "dagkeeper worker drain:"
    if deadline_s is not None and deadline_s < 0:
        print(f"{say} --deadline must be 0 or more seconds", file=sys.stderr)
        return 2
    zk = ZkClient(settings.zk, name="drain")
    try:
        zk.start()
        if cancel:
            gone = drain.cancel(zk, worker_id)
            print(f"{say} {'withdrawn' if gone else 'no request was pending'} for {worker_id}")
            return 0
        workers = {w.id: w for w in membership.workers(zk)}
        if worker_id not in workers:
            known = ", ".join(sorted(workers)) or "none"
            print(
                f"{say} no worker {worker_id!r} is registered (registered: {known})",
                file=sys.stderr,
            )
            return 1
        new = drain.request(zk, worker_id, "dagkeeper worker drain", deadline_s)
        print(f"{say} {'requested' if new else 'already requested'} for {worker_id}")
        if not wait:
            return 0
        limit = deadline_s if deadline_s is not None else settings.worker.drain_deadline_s
        until = time.monotonic() + limit + WAIT_GRACE_S
        while time.monotonic() < until:
            reg = {w.id: w for w in membership.workers(zk)}.get(worker_id)
            if reg is None:
                print(f"{say} {worker_id} has stopped")
                return 0
            if reg.data.get("draining") and reg.data.get("load") == 0:
                print(f"{say} {worker_id} runs nothing now")
                return 0
            time.sleep(0.5)
        print(f"{say} {worker_id} still runs tasks; giving up waiting", file=sys.stderr)
        return 1
    except Exception as exc:  # an operator command: the reason, never a stack trace
        print(
            f"{say} {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr
        )
        return 2
    finally:
        zk.stop()
