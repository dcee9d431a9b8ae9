"""SQL and PROCEDURE tasks: the worker reads the named datasource, decrypts its password and hands
the connection to a runner process (``sql_run``) through its stdin, never through argv, env or a
file; the request (statements, parameters) goes in a 0600 file.

Kill: SIGTERM makes the runner cancel the statement from a second connection (pg_cancel_backend /
KILL QUERY)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from core.crypto import SecretBox
from core.errors import DagkeeperError
from db import datasources
from worker import sql_mail
from worker.task_types import TaskType, register, worker_context
from worker.task_types.runner_common import runner_argv, substitute, task_params, write_request

# workdir -> (time, connection JSON with the password) for the spawn that follows prepare; an
# entry whose spawn never came (cancelled in between) is dropped after PENDING_TTL_S
_pending: dict[str, tuple[float, bytes]] = {}
_pending_lock = threading.Lock()
PENDING_TTL_S = 300.0


def load_connection(name: str) -> datasources.ConnectionInfo:
    """The datasource ``name`` with its password decrypted (ValueError if it does not exist)."""
    ctx = worker_context()
    if ctx.engine is None:
        raise ValueError("this worker has no database to read datasources from")
    with Session(ctx.engine) as s:
        row = datasources.get_by_name(s, name)
        if row is None:
            raise ValueError(f"datasource {name!r} does not exist")
        password = None
        if row.password_enc:
            try:
                password = SecretBox.from_settings(ctx.settings).decrypt(row.password_enc)
            except DagkeeperError as exc:  # a wrong key fails the attempt, it is not retried here
                raise ValueError(f"datasource {name!r}: {exc.message}") from None
        return datasources.connection_info(row, password)


class _DatasourceTask(TaskType):
    mode = ""

    def request(self, spec: Mapping[str, Any], params: dict[str, str]) -> dict[str, Any]:
        raise NotImplementedError

    def prepare(self, spec: Mapping[str, Any], env: dict[str, str], workdir: Path) -> list[str]:
        name = spec.get("datasource")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a {self.name} task needs a 'datasource'")
        req = self.request(spec, task_params(spec))
        ctx = worker_context()
        req["mode"] = self.mode
        req["max_rows"] = min(
            int(spec.get("max_rows") or ctx.settings.worker.sql_max_rows),
            ctx.settings.worker.sql_max_rows,
        )
        conn = load_connection(name)
        path = write_request(workdir, req)
        now = time.monotonic()
        with _pending_lock:
            for key in [k for k, (t, _) in _pending.items() if now - t > PENDING_TTL_S]:
                del _pending[key]
            _pending[str(workdir)] = (now, json.dumps(conn.as_request()).encode())
        return runner_argv("worker.task_types.sql_run", path)

    def spawn(self, argv: list[str], env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
        with _pending_lock:
            _, secret = _pending.pop(str(workdir), (0.0, b"{}"))
        proc = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
        assert proc.stdin is not None
        try:  # a few hundred bytes: fits the pipe buffer, never blocks
            proc.stdin.write(secret)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        return proc


@register
class SqlTask(_DatasourceTask):
    """Fields: ``datasource``, ``sql``, ``pre_statements``, ``post_statements`` (same
    transaction), ``query`` (default: whether the statement returns rows), ``max_rows``,
    ``output_first_row``. ``${name}`` parameters become bound parameters."""

    name = "SQL"
    mode = "sql"

    def request(self, spec: Mapping[str, Any], params: dict[str, str]) -> dict[str, Any]:
        sql = spec.get("sql")
        if not isinstance(sql, str) or not sql.strip():
            raise ValueError("a SQL task needs a non-empty 'sql'")
        return {
            "sql": sql,
            "pre_statements": list(spec.get("pre_statements") or []),
            "post_statements": list(spec.get("post_statements") or []),
            "query": spec.get("query"),
            "output_first_row": bool(spec.get("output_first_row")),
            "result_rows": sql_mail.rows_wanted(spec, worker_context().settings),
            "params": params,
        }


@register
class ProcedureTask(_DatasourceTask):
    """Fields: ``datasource``, ``procedure``, ``in_params`` (name -> value; ``${p}`` in a value is
    replaced, then bound), ``out_params`` (names, or name -> SQL type); OUT values are outputs."""

    name = "PROCEDURE"
    mode = "procedure"

    def request(self, spec: Mapping[str, Any], params: dict[str, str]) -> dict[str, Any]:
        proc = spec.get("procedure")
        if not isinstance(proc, str) or not proc.strip():
            raise ValueError("a PROCEDURE task needs a 'procedure'")
        outs = spec.get("out_params") or []
        out_types = dict(outs) if isinstance(outs, dict) else {str(n): "" for n in outs}
        return {
            "procedure": proc,
            "in_params": substitute(dict(spec.get("in_params") or {}), params, "in_params"),
            "out_params": out_types,
            "arg_order": list(spec.get("arg_order") or []),
        }
