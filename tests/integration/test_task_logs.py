"""Task logs on real servers: shipped to PostgreSQL while the task runs (an empty log ships
nothing), read through the worker's log server (token, window, download) and the API; escapes
from the log directory refused by both; and, with real processes, a follow through the API that
sees lines while the task writes and a log still served after its worker was killed -9."""

from __future__ import annotations

import http.client
import os
import threading
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from harness import Cluster
from sqlalchemy import text
from support import api_client
from task_type_support import Bench

from coord.zk import ZkClient
from core.settings import Settings
from core.tasklogs import resolve_token
from db.engine import SessionFactory
from ops.localserver import free_port, wait_for

BIG = "seq -f 'row %g xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' 1 3000"


def chunks_of(sf: SessionFactory, ti: int) -> list[Any]:
    with sf.begin() as s:
        return list(
            s.execute(
                text(
                    "SELECT seq, first_line, line_count, data FROM task_log_chunk"
                    " WHERE task_instance_id = :i ORDER BY seq"
                ),
                {"i": ti},
            ).all()
        )


def api_on(
    settings: Settings, sf: SessionFactory, zk: ZkClient, log_dir: Path | None = None
) -> TestClient:
    """The API on this machine (``log_dir`` None) or on another one (its own log dir)."""
    if log_dir is not None:
        settings = settings.model_copy(deep=True)
        settings.worker.log_dir, settings.worker.host = str(log_dir), "another-host"
    return api_client(settings, sf, zk)


def raw_get(url: str, path: str, token: str | None) -> tuple[int, bytes]:
    """A GET with ``path`` sent exactly as given (no client-side normalisation of ``..``)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_logs_are_shipped_and_served_by_log_server_and_api(
    bench: Bench, zk: ZkClient, settings: Settings, tmp_path: Path
) -> None:
    w = bench.start_worker()
    # tasks that print nothing cost the shipper nothing: not one statement
    bench.run_tasks(["true"] * 10)
    assert w.executor.shipper.stats["batches"] == 0
    run, got = bench.run_tasks(["printf 'one\\ntwo\\nthree'", "true", BIG])
    small, empty, big = run.task_ids
    assert all(r.state == "SUCCESS" for r in got.values())

    # PostgreSQL holds each log byte for byte; an empty log shipped nothing
    assert not chunks_of(bench.sf, empty)
    for ti in (small, big):
        c = chunks_of(bench.sf, ti)
        assert b"".join(bytes(r.data) for r in c) == Path(got[ti].log_path or "").read_bytes()
        assert [r.seq for r in c] == list(range(len(c)))
    assert len(chunks_of(bench.sf, small)) == 1  # a tiny log: one chunk, shipped with its end
    big_chunks = chunks_of(bench.sf, big)
    assert len(big_chunks) >= 2 and all(len(r.data) <= 65536 for r in big_chunks)
    assert all(bytes(r.data).endswith(b"\n") for r in big_chunks)  # cut at line ends
    assert big_chunks[-1].first_line + big_chunks[-1].line_count == 3000

    # the worker's log server: the token, a window, the download
    assert w.logserver is not None
    url, token = w.logserver.url, resolve_token(settings)
    assert w.zk is not None and w.zk.get_json(w.registration_paths[0])["log_server"] == url
    assert raw_get(url, f"/logs/{small}", None)[0] == 401
    assert raw_get(url, f"/logs/{small}", "wrong")[0] == 401
    auth = {"Authorization": f"Bearer {token}"}
    r = httpx.get(f"{url}/logs/{small}", params={"skip": 1, "limit": 1}, headers=auth)
    assert r.json() == {"lines": ["two"], "next": 2, "complete": False, "running": False}
    r = httpx.get(f"{url}/logs/{small}", params={"skip": 1}, headers=auth)
    assert r.json()["lines"] == ["two", "three"] and r.json()["complete"]
    r = httpx.get(f"{url}/logs/{big}/download", headers=auth)
    assert r.content == Path(got[big].log_path or "").read_bytes()
    assert httpx.get(f"{url}/logs/{10**12}", headers=auth).status_code == 404

    # the API on another machine (another log dir): served from PostgreSQL
    with api_on(settings, bench.sf, zk, tmp_path / "elsewhere") as api:
        body = api.get(f"/api/v1/task-instances/{small}/log").json()
        assert body == {"lines": ["one", "two", "three"], "next": 3, "complete": True,
                        "available": True}  # fmt: skip
        body = api.get(f"/api/v1/task-instances/{big}/log?skip=2990&limit=100").json()
        assert body["lines"][0].startswith("row 2991 ") and len(body["lines"]) == 10
        assert body["next"] == 3000 and body["complete"]
        body = api.get(f"/api/v1/task-instances/{big}/log?skip=1000&limit=3").json()
        assert [x.split()[1] for x in body["lines"]] == ["1001", "1002", "1003"]
        assert not body["complete"]
        r = api.get(f"/api/v1/task-instances/{big}/log/download")
        assert r.status_code == 200 and r.content == Path(got[big].log_path or "").read_bytes()
        assert api.get(f"/api/v1/task-instances/{empty}/log").json()["lines"] == []


def test_log_server_follow_streams_lines_until_the_task_ends(
    bench: Bench, settings: Settings
) -> None:
    w = bench.start_worker()
    assert w.logserver is not None
    ti, _ = bench.running('for i in $(seq 1 10); do echo "tick $i"; sleep 0.2; done; printf end')
    wait_for(lambda: w.executor.shipper.path_of(ti), 5 * bench.scale, what="attempt tracked")
    seen: list[tuple[str, str]] = []
    with httpx.stream(
        "GET",
        f"{w.logserver.url}/logs/{ti}",
        params={"follow": "true", "skip": 2},
        headers={"Authorization": f"Bearer {resolve_token(settings)}"},
        timeout=httpx.Timeout(10 * bench.scale),
    ) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            seen.append((line, bench.row(ti).state))
    assert [x for x, _ in seen] == [f"tick {i}" for i in range(3, 11)] + ["end"]
    assert seen[0][1] == "RUNNING"  # the first lines came while the task was still writing


def test_log_requests_that_try_to_escape_the_log_dir_are_refused(
    bench: Bench, zk: ZkClient, settings: Settings, tmp_path: Path
) -> None:
    w = bench.start_worker()
    assert w.logserver is not None
    url, token = w.logserver.url, resolve_token(settings)
    secret = tmp_path / "outside.txt"
    secret.write_text("TOPSECRET\n")
    run, got = bench.run_tasks(["echo a", "echo b", "echo c"])
    by_abs, by_dots, by_link = run.task_ids
    # paths in the URL: only a task-instance id is accepted, nothing is resolved from it
    for path in (
        "/logs/..%2F..%2F..%2Fetc%2Fpasswd",
        "/logs/../../../etc/passwd",
        "/logs/%2Fetc%2Fpasswd",
        "//etc/passwd",
        f"/logs/{by_abs}/../../../etc/passwd",
        f"/logs/{by_abs}/..%2F..%2Foutside.txt",
        f"/logs/{secret}",
    ):
        status, body = raw_get(url, path, token)
        assert status == 404 and b"root:" not in body and b"TOPSECRET" not in body, path
    # recorded paths that leave the log dir: absolute, with '..', a symlink out of it
    with bench.sf.begin() as s:
        s.execute(text("UPDATE task_instance SET log_path = :p WHERE id = :i"),
                  {"p": str(secret), "i": by_abs})  # fmt: skip
        s.execute(text("UPDATE task_instance SET log_path = :p WHERE id = :i"),
                  {"p": "../" * 12 + str(secret).lstrip("/"), "i": by_dots})  # fmt: skip
        s.execute(text("DELETE FROM task_log_chunk"))  # no durable copy: files are the source
    link = Path(got[by_link].log_path or "")
    link.unlink()
    os.symlink(secret, link)
    for ti in (by_abs, by_dots, by_link):
        status, body = raw_get(url, f"/logs/{ti}", token)
        assert status == 403 and b"TOPSECRET" not in body, (ti, body)
        assert raw_get(url, f"/logs/{ti}/download", token)[0] == 403
    # the API refuses them too: reading its own log dir, or asking the worker's log server
    for log_dir in (None, tmp_path / "elsewhere"):
        with api_on(settings, bench.sf, zk, log_dir) as api:
            for ti in (by_abs, by_dots, by_link):
                for sub in ("log", "log/download"):
                    r = api.get(f"/api/v1/task-instances/{ti}/{sub}")
                    assert r.status_code == 403 and "TOPSECRET" not in r.text, (ti, sub, r.text)


# --- real processes: follow while writing, and a log that outlives its worker -----------------

TOKEN = "log-token-for-the-cluster"


def test_follow_sees_lines_while_writing_and_log_outlives_a_killed_worker(
    proc_cluster: Cluster, timeout_scale: float
) -> None:
    c = proc_cluster
    logs = {"DAGKEEPER_LOGS__TOKEN": TOKEN, "DAGKEEPER_LOGS__SERVER_BIND": "127.0.0.1"}
    port = free_port()
    c.master("m1")
    c.worker("w1", **logs)
    c.start("api", "api", DAGKEEPER_API__PORT=str(port), DAGKEEPER_API__TOKEN="t", **logs)
    c.wait_registered(1, 1)
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1",
                       headers={"Authorization": "Bearer t"}, timeout=30)  # fmt: skip
    c.wait(lambda: _up(api), 30, "the API")
    iid = c.submit(
        [
            {"name": "talk", "command": 'for i in $(seq 1 20); do echo "line $i"; sleep 0.2; done'},
            {"name": "hang", "command": "echo before-the-kill; sleep 300", "depends_on": ["talk"]},
        ]
    )
    talk = c.wait(lambda: c.find_attempt(iid, "talk"), 30, "talk RUNNING")

    # follow through the API: lines arrive while the task still writes, the stream ends with it
    seen: list[tuple[str, str]] = []  # (line, state of the attempt when it arrived)

    def follow() -> None:
        with api.stream("GET", f"/task-instances/{talk.id}/log", params={"follow": "true"}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                seen.append((line, c.task_state(talk.id)))

    reader = threading.Thread(target=follow)
    reader.start()
    c.wait(lambda: len(seen) >= 3, 10, "3 followed lines")
    assert all(state == "RUNNING" for _, state in seen[:3]), seen
    reader.join(30 * timeout_scale)
    assert not reader.is_alive()
    assert [line for line, _ in seen] == [f"line {i}" for i in range(1, 21)]
    assert c.task_state(talk.id) == "SUCCESS"
    api_log = c.procs["api"].log_path.read_text()
    assert "unreachable" not in api_log and "broke" not in api_log  # it was the live tail

    # kill -9 of the worker (and its task) while "hang" runs; its files are gone with it
    hang = c.wait(lambda: c.find_attempt(iid, "hang"), 30, "hang RUNNING")
    c.wait(lambda: c.one("SELECT count(*) FROM task_log_chunk WHERE task_instance_id = :i",
                         i=hang.id), 10, "hang's first line shipped")  # fmt: skip
    c.kill9("w1")
    for ti in (talk.id, hang.id):
        Path(c.one("SELECT log_path FROM task_instance WHERE id = :i", i=ti)).unlink()
    body = api.get(f"/task-instances/{talk.id}/log").json()
    assert body == {"lines": [f"line {i}" for i in range(1, 21)], "next": 20, "complete": True,
                    "available": True}  # fmt: skip
    r = api.get(f"/task-instances/{talk.id}/log/download")
    assert r.text == "".join(f"line {i}\n" for i in range(1, 21))
    # the running attempt of the dead worker: what was shipped, not complete until failed over
    body = api.get(f"/task-instances/{hang.id}/log").json()
    assert body["lines"] == ["before-the-kill"] and not body["complete"]
    c.wait(lambda: c.task_state(hang.id) == "NEED_FAULT_TOLERANCE", 30, "hang failed over")
    assert api.get(f"/task-instances/{hang.id}/log").json()["complete"]


def _up(api: httpx.Client) -> bool:
    try:
        return api.get("/cluster").status_code == 200
    except httpx.HTTPError:
        return False
