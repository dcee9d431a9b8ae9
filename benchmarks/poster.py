"""Many identical POSTs at once from ``conc`` threads, each over its own keep-alive connection
(stdlib http.client): the burst workload's client. httpx spent 5-9 ms of CPU per request here,
a quarter of a 2-core machine at the rates measured, which the cluster under test then lacked."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any
from urllib.parse import urlsplit


class PostError(RuntimeError):
    pass


def post_many(base: str, path: str, headers: dict[str, str], n: int, conc: int) -> int:
    """POST ``{}`` to ``base + path`` ``n`` times over ``conc`` connections; every answer must
    be 202. Returns how many requests were sent again after a connection error (the server may
    then have accepted both: count the results on the server side)."""
    url = urlsplit(base)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    full = url.path.rstrip("/") + path
    body = b"{}"
    hdrs = dict(headers) | {"Content-Type": "application/json", "Connection": "keep-alive"}
    lock = threading.Lock()
    state: dict[str, Any] = {"left": n, "retried": 0, "error": None}

    def take() -> bool:
        with lock:
            if state["left"] <= 0 or state["error"] is not None:
                return False
            state["left"] -= 1
            return True

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=300)
        try:
            while take():
                for attempt in range(3):
                    try:
                        conn.request("POST", full, body=body, headers=hdrs)
                        resp = conn.getresponse()
                        data = resp.read()
                    except (OSError, http.client.HTTPException):
                        conn.close()  # reconnects on the next request
                        if attempt == 2:
                            raise
                        with lock:
                            state["retried"] += 1
                        continue
                    if resp.status != 202:
                        raise PostError(f"POST {full}: {resp.status} {data[:300]!r}")
                    json.loads(data)
                    break
        except Exception as exc:
            with lock:
                state["error"] = state["error"] or exc
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, conc))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if state["error"] is not None:
        raise PostError(f"burst: {state['error']}") from state["error"]
    return int(state["retried"])
