"""Where the API reads a task's log: the live tail from the worker's log server while the attempt
runs, the chunks its worker shipped to PostgreSQL once it is over (or its worker is gone), and the
local file only when it is on this machine, inside the log directory. No path comes from a client:
the attempt's id leads to its row, its worker's registration and its chunks."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from api.deps import ApiContext
from api.schemas_instances import LogWindow
from core.errors import Forbidden
from core.states import TASK_TERMINAL, TaskState
from core.tasklogs import (
    Chunk,
    LogPathRefused,
    confined,
    read_window,
    resolve_token,
    window_from_chunks,
)
from db.models import TaskInstance

log = logging.getLogger(__name__)

TERMINAL = {s.value for s in TASK_TERMINAL}
PAGE = 16  # chunks per query (at most 1 MiB with the default chunk size)
LIVE_TIMEOUT = httpx.Timeout(5.0, connect=1.0)
FOLLOW_POLL_S = 0.3
_CHUNKS = text(
    "SELECT seq, first_line, line_count, data FROM task_log_chunk"
    " WHERE task_instance_id = :id AND seq > :after AND first_line + line_count >= :skip"
    " ORDER BY seq LIMIT :n"
)
_ANY_CHUNK = text("SELECT EXISTS (SELECT 1 FROM task_log_chunk WHERE task_instance_id = :id)")
_tokens: dict[tuple[str, Path], str] = {}


def _token(ctx: ApiContext) -> str:
    key = (ctx.settings.logs.token, ctx.settings.data_path)
    if key not in _tokens:
        _tokens[key] = resolve_token(ctx.settings)
    return _tokens[key]


def worker_url(ctx: ApiContext, row: TaskInstance) -> str | None:
    """The log server of the attempt's worker from its ZooKeeper registration; None if the
    worker is gone (or ZooKeeper is unreachable)."""
    if not row.worker_id or not ctx.zk_connected(wait_s=1.0):
        return None
    zk = ctx.zk
    groups = [row.worker_group] + [
        g for g in zk.children(zk.paths.workers_root()) if g != row.worker_group
    ]
    for group in groups:
        try:
            data = zk.get_json(zk.paths.worker(group, row.worker_id))
        except Exception as exc:
            log.warning("api: task instance %d: cannot read its worker: %s", row.id, exc)
            return None
        if data is not None:
            url = data.get("log_server")
            return str(url) if url else None
    return None


def _live(ctx: ApiContext, url: str, row: TaskInstance, params: dict[str, Any]) -> Any | None:
    """A JSON answer of the worker's log server; None if it cannot give one. Its 403 (a log
    outside its log directory) is passed on."""
    try:
        r = httpx.get(
            f"{url}/logs/{row.id}",
            params=params,
            headers={"Authorization": f"Bearer {_token(ctx)}"},
            timeout=LIVE_TIMEOUT,
        )
    except httpx.HTTPError as exc:
        log.info("api: task instance %d: log server %s unreachable: %s", row.id, url, exc)
        return None
    if r.status_code == 403:
        raise Forbidden(
            f"task instance {row.id}: its log path is outside the log directory",
            {"task_instance_id": row.id},
        )
    if r.status_code != 200:
        log.info("api: task instance %d: log server %s answered %d", row.id, url, r.status_code)
        return None
    return r.json()


def chunks(ctx: ApiContext, ti_id: int, skip: int = 0) -> Iterator[Chunk]:
    """The shipped chunks from the one holding line ``skip`` on, a page per query."""
    after = -1
    while True:
        with ctx.session_factory() as s:
            page = s.execute(_CHUNKS, {"id": ti_id, "after": after, "skip": skip, "n": PAGE}).all()
        for r in page:
            yield Chunk(int(r.seq), int(r.first_line), int(r.line_count), bytes(r.data))
        if len(page) < PAGE:
            return
        after = int(page[-1].seq)


def has_chunks(ctx: ApiContext, ti_id: int) -> bool:
    with ctx.session_factory() as s:
        return bool(s.execute(_ANY_CHUNK, {"id": ti_id}).scalar())


def local_file(row: TaskInstance, log_root: Path) -> tuple[Path | None, bool]:
    """The attempt's log file if it is on this machine, inside ``log_root``; and whether its
    recorded path was refused for leaving the log directory (``..``, absolute, a symlink)."""
    if not row.log_path:
        return None, False
    try:
        path = confined(log_root, row.log_path)
    except LogPathRefused:
        log.warning("api: task instance %d: not reading log path %r", row.id, row.log_path)
        return None, True
    return (path if path.is_file() else None), False


def _refused(row: TaskInstance) -> Forbidden:
    return Forbidden(
        f"task instance {row.id}: its log path is outside the log directory",
        {"task_instance_id": row.id},
    )


def window(
    ctx: ApiContext, row: TaskInstance, skip: int, limit: int, live: bool = True
) -> LogWindow:
    """Lines ``skip`` .. ``skip+limit``: the live tail, else PostgreSQL, else the local file,
    else (nothing shipped) the worker of a finished attempt. 403 if the only source left is a
    path outside the log directory."""
    final = row.state in TERMINAL
    url = worker_url(ctx, row) if live and row.state == TaskState.RUNNING else None
    if url:
        got = _live(ctx, url, row, {"skip": skip, "limit": limit})
        if got is not None:
            return LogWindow(lines=got["lines"], next=got["next"], complete=got["complete"])
    lines, at_end = window_from_chunks(chunks(ctx, row.id, skip), skip, limit, final)
    if lines or has_chunks(ctx, row.id):
        return LogWindow(lines=lines, next=skip + len(lines), complete=final and at_end)
    path, refused = local_file(row, ctx.settings.log_path)
    if path is not None:
        lines, at_end = read_window(path, skip, limit, final)
        return LogWindow(lines=lines, next=skip + len(lines), complete=final and at_end)
    url = worker_url(ctx, row) if live and final else None
    if url:
        got = _live(ctx, url, row, {"skip": skip, "limit": limit})
        if got is not None:
            return LogWindow(lines=got["lines"], next=got["next"], complete=got["complete"])
    if refused:
        raise _refused(row)
    return LogWindow(lines=[], next=skip, complete=final, available=False)


def follow(ctx: ApiContext, ti_id: int, skip: int, load: Any) -> Iterator[bytes]:
    """Lines from ``skip`` on as they are written, until the attempt is over and all were sent:
    the worker's follow stream while it runs, else PostgreSQL polled every FOLLOW_POLL_S."""
    sent = skip
    while True:
        row: TaskInstance = load(ti_id)
        url = worker_url(ctx, row) if row.state == TaskState.RUNNING else None
        streamed = False
        if url:
            try:
                with httpx.stream(
                    "GET",
                    f"{url}/logs/{ti_id}",
                    params={"follow": "true", "skip": sent},
                    headers={"Authorization": f"Bearer {_token(ctx)}"},
                    timeout=httpx.Timeout(5.0, connect=1.0, read=None),
                ) as r:
                    if r.status_code == 200:
                        for data in r.iter_raw():
                            streamed = True
                            sent += data.count(b"\n")
                            yield data
            except httpx.HTTPError as exc:
                log.info("api: task instance %d: follow from %s broke: %s", ti_id, url, exc)
            if streamed:
                continue  # the worker is done with it: the rest (if any) comes from PostgreSQL
        w = window(ctx, row, sent, 1000, live=False)
        if w.lines:
            yield ("\n".join(w.lines) + "\n").encode()
            sent = w.next
        if w.complete or (row.state in TERMINAL and not w.lines):
            return
        if not w.lines:
            time.sleep(FOLLOW_POLL_S)


def download(ctx: ApiContext, row: TaskInstance) -> Iterator[bytes] | Path | None:
    """The whole log: a stream from the worker while it runs or from PostgreSQL, or the local
    file's path; None if there is none."""
    if row.state == TaskState.RUNNING:
        url = worker_url(ctx, row)
        if url:
            body = _live_download(ctx, url, row.id)
            if body is not None:
                return body
    if has_chunks(ctx, row.id):
        return (c.data for c in chunks(ctx, row.id))
    path, refused = local_file(row, ctx.settings.log_path)
    if path is not None:
        return path
    url = worker_url(ctx, row) if row.state in TERMINAL else None
    body = _live_download(ctx, url, row.id) if url else None
    if body is None and refused:
        raise _refused(row)
    return body


def _live_download(ctx: ApiContext, url: str, ti_id: int) -> Iterator[bytes] | None:
    client = httpx.Client(timeout=httpx.Timeout(30.0, connect=1.0))
    try:
        req = client.build_request(
            "GET",
            f"{url}/logs/{ti_id}/download",
            headers={"Authorization": f"Bearer {_token(ctx)}"},
        )
        r = client.send(req, stream=True)
    except httpx.HTTPError:
        client.close()
        return None
    if r.status_code != 200:
        r.close()
        client.close()
        if r.status_code == 403:
            raise Forbidden(
                f"task instance {ti_id}: its log path is outside the log directory",
                {"task_instance_id": ti_id},
            )
        return None

    def body() -> Iterator[bytes]:
        try:
            yield from r.iter_raw()
        finally:
            r.close()
            client.close()

    return body()
