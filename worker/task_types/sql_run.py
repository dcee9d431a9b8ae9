"""The SQL/PROCEDURE runner process: connection (with its password) from stdin, request from the
file in argv. Statements run in one transaction on a worker thread; SIGTERM cancels the running
statement from a second connection (PostgreSQL pg_cancel_backend, MySQL KILL QUERY)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from db.datasources import ConnectionInfo
from worker.task_types.outputs import RESULT_KEY, defang, emit_output, pack_result

PARAM_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TYPE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_ ]*(\(\d+(,\s*\d+)?\))?$")
CANCEL_WAIT_S = 3.0
EXIT_CANCELLED = 128 + signal.SIGTERM


def bind(sql: str, params: Mapping[str, str]) -> tuple[str, dict[str, str] | None]:
    """``${name}`` -> a pyformat placeholder (psycopg2 and PyMySQL); the value is bound by the
    driver, never pasted into the SQL. Without placeholders the SQL is sent as written."""
    names = PARAM_RE.findall(sql)
    if not names:
        return sql, None
    missing = sorted({n for n in names if n not in params})
    if missing:
        raise ValueError(f"unknown parameter(s) {', '.join('${' + n + '}' for n in missing)}")
    text = PARAM_RE.sub(lambda m: f"%({m.group(1)})s", sql.replace("%", "%%"))
    return text, {n: params[n] for n in names}


class Runner:
    def __init__(self, conn: ConnectionInfo, req: Mapping[str, Any]) -> None:
        self.info = conn
        self.req = req
        self.engine = create_engine(conn.url(), poolclass=NullPool)
        self.dbapi: Any = None
        self.backend_id: int | None = None
        self.error: BaseException | None = None
        self.cancelled = False

    def say(self, line: str) -> None:
        if self.info.password:
            line = line.replace(self.info.password, "***")
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    # connection and cancel

    def connect(self) -> None:
        self.dbapi = self.engine.raw_connection()
        cur = self.dbapi.cursor()
        if self.info.kind == "POSTGRESQL":
            cur.execute("SELECT pg_backend_pid()")
            self.backend_id = int(cur.fetchone()[0])
            try:  # PostgreSQL 14+: a backend whose client died stops within a second
                cur.execute("SET client_connection_check_interval = 1000")
            except Exception:
                self.dbapi.rollback()
        else:
            cur.execute("SELECT CONNECTION_ID()")
            self.backend_id = int(cur.fetchone()[0])
        self.dbapi.commit()
        self.say(f"[sql] connected to {self.info.safe_url()} (backend {self.backend_id})")

    def cancel(self) -> None:
        """From a second connection: stop the statement the first one is running."""
        if self.backend_id is None:
            return
        self.cancelled = True
        self.say(f"[sql] cancelling backend {self.backend_id}")
        other = self.engine.raw_connection()
        try:
            cur = other.cursor()
            if self.info.kind == "POSTGRESQL":
                cur.execute("SELECT pg_cancel_backend(%s)", (self.backend_id,))
            else:
                cur.execute(f"KILL QUERY {int(self.backend_id)}")
            other.commit()
        finally:
            other.close()

    # statements

    def execute(self, cur: Any, sql: str, params: Mapping[str, str]) -> None:
        text, bound = bind(sql, params)
        if bound is None:
            cur.execute(text)
        else:
            cur.execute(text, bound)

    def show_rows(self, cur: Any, output_first: bool) -> None:
        cols = [d[0] for d in cur.description]
        cap = int(self.req.get("max_rows") or 1000)
        rows = cur.fetchmany(cap + 1)
        self.say(defang("\t".join(cols)))
        for row in rows[:cap]:
            self.say(defang("\t".join("NULL" if v is None else str(v) for v in row)))
        more = len(rows) > cap
        self.say(
            f"[sql] {min(len(rows), cap)} row(s)"
            + (f"; more not shown (max_rows {cap})" if more else "")
        )
        if output_first and rows:
            for c, v in zip(cols, rows[0], strict=True):
                emit_output(c, v)
        if self.req.get("result_rows"):  # send_email: the first rows go to the worker, packed
            emit_output(RESULT_KEY, pack_result(cols, rows, int(self.req["result_rows"])))

    def run_sql(self) -> None:
        params: dict[str, str] = dict(self.req.get("params") or {})
        cur = self.dbapi.cursor()
        for stmt in self.req.get("pre_statements") or []:
            self.execute(cur, stmt, params)
            self.say(f"[sql] pre-statement done ({cur.rowcount} row(s))")
        self.execute(cur, self.req["sql"], params)
        query = self.req.get("query")
        if cur.description is not None and query is not False:
            self.show_rows(cur, bool(self.req.get("output_first_row")))
        else:
            if query:
                self.say("[sql] the statement returned no result set")
            self.say(f"[sql] {cur.rowcount} row(s) affected")
        for stmt in self.req.get("post_statements") or []:
            self.execute(cur, stmt, params)
            self.say(f"[sql] post-statement done ({cur.rowcount} row(s))")

    def run_procedure(self) -> None:
        proc = str(self.req["procedure"])
        ins: dict[str, Any] = dict(self.req.get("in_params") or {})
        outs: dict[str, str] = dict(self.req.get("out_params") or {})
        if not IDENT_RE.match(proc):
            raise ValueError(f"procedure: invalid name {proc!r}")
        for n, t in list(ins.items()) + list(outs.items()):
            if not NAME_RE.match(n) or (n in outs and t and not TYPE_RE.match(t)):
                raise ValueError(f"invalid parameter {n!r}")
        order: list[str] = list(self.req.get("arg_order") or [])
        order += [n for n in list(ins) + list(outs) if n not in order]
        cur = self.dbapi.cursor()
        bound = {f"p_{n}": v for n, v in ins.items()}
        values: dict[str, Any] = {}
        if self.info.kind == "POSTGRESQL":
            args = []
            for n in order:
                if n in ins:
                    cast = f"::{outs[n]}" if outs.get(n) else ""
                    args.append(f"{n} => %(p_{n})s{cast}")
                else:
                    args.append(f"{n} => NULL" + (f"::{outs[n]}" if outs.get(n) else ""))
            cur.execute(f"CALL {proc}({', '.join(args)})", bound)
            if cur.description is not None:
                row = cur.fetchone()
                names = [d[0] for d in cur.description]
                values = dict(zip(names, row, strict=True)) if row else {}
        else:
            for n in outs:
                if n in ins:
                    cur.execute(f"SET @dk_{n} = %(p_{n})s", {f"p_{n}": ins[n]})
            args = [f"@dk_{n}" if n in outs else f"%(p_{n})s" for n in order]
            cur.execute(f"CALL {proc}({', '.join(args)})", bound or None)
            while cur.description is not None:
                self.show_rows(cur, False)
                if not cur.nextset():
                    break
            if outs:
                cur.execute("SELECT " + ", ".join(f"@dk_{n} AS {n}" for n in outs))
                row = cur.fetchone()
                values = dict(zip(list(outs), row, strict=True))
        self.say(f"[sql] CALL {proc} done")
        for n in outs:
            self.say(defang(f"[sql] OUT {n} = {values.get(n)}"))
            emit_output(n, values.get(n))

    def work(self) -> None:
        try:
            if self.req.get("mode") == "procedure":
                self.run_procedure()
            else:
                self.run_sql()
            self.dbapi.commit()
        except BaseException as exc:
            self.error = exc
            with contextlib.suppress(Exception):
                self.dbapi.rollback()


def main(argv: Sequence[str]) -> int:
    conn = ConnectionInfo.from_request(json.loads(sys.stdin.read() or "{}"))
    with open(argv[1], encoding="utf-8") as fh:
        req = json.load(fh)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    r = Runner(conn, req)
    try:
        r.connect()
    except Exception as exc:
        r.say(f"[sql] cannot connect to {conn.safe_url()}: {type(exc).__name__}: {exc}")
        return 2
    t = threading.Thread(target=r.work, name="sql", daemon=True)
    t.start()
    while t.is_alive():
        t.join(0.1)
        if stop.is_set() and not r.cancelled:
            try:
                r.cancel()
            except Exception as exc:
                r.say(f"[sql] cancel failed: {type(exc).__name__}: {exc}")
            t.join(CANCEL_WAIT_S)
            if t.is_alive():
                r.say("[sql] the statement did not stop; exiting")
                os._exit(EXIT_CANCELLED)
    if stop.is_set():
        r.say("[sql] cancelled")
        return EXIT_CANCELLED
    if r.error is not None:
        r.say(f"[sql] failed: {type(r.error).__name__}: {str(r.error).strip()}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
