"""``python -m ops.healthcheck master|worker|api``: the container health check of a daemon, on
its own health endpoint from inside its host: a master or worker is healthy while its metrics
endpoint says its ZooKeeper session is CONNECTED (``metrics.port`` must be fixed, not 0), the API
while ``/ready`` answers 200 (PostgreSQL and ZooKeeper reachable). Exit 0 healthy, 1 not."""

from __future__ import annotations

import sys

import httpx

from core.settings import Settings

CONNECTED = 'dagkeeper_zk_session_state{state="CONNECTED"} 1.0'
TIMEOUT_S = 3.0


def check(role: str, settings: Settings, host: str = "127.0.0.1") -> tuple[bool, str]:
    """(healthy, why) of the daemon ``role`` these settings describe."""
    if role == "api":
        url = f"http://{host}:{settings.api.port}/ready"
    elif role in ("master", "worker"):
        if not settings.metrics.enabled or not settings.metrics.port:
            return False, "DAGKEEPER_METRICS__PORT must name a fixed port for the health check"
        url = f"http://{host}:{settings.metrics.port}/metrics"
    else:
        return False, f"unknown daemon {role!r} (master, worker or api)"
    try:
        r = httpx.get(url, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        return False, f"{url}: {type(exc).__name__}"
    if r.status_code != 200:
        return False, f"{url}: HTTP {r.status_code}"
    if role != "api" and CONNECTED not in r.text:
        return False, f"{url}: the ZooKeeper session is not CONNECTED"
    return True, f"{url}: ok"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ops.healthcheck master|worker|api", file=sys.stderr)
        return 2
    ok, why = check(args[0], Settings())
    print(why, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
