"""Process-level test harness: masters and workers as real ``dagkeeper`` child processes (kill -9,
SIGSTOP/SIGCONT, restart), workflows submitted through PostgreSQL, tasks that append their
(instance, task, attempt, start, end, worker) to a side-effect file, and the invariant checks.

Each task also writes a start line (and, with ``tick_s``, a line every ``tick_s`` while it runs)
to a life file, so that the overlap check covers a killed attempt too: it lived until its last
line, and the next attempt of its task must start after that."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil
from sqlalchemy import text
from zk_acl import kazoo_acl, password_file

from core.settings import DbSettings
from core.spec import parse_workflow_spec
from db.definitions import create_workflow
from db.engine import make_engine, make_session_factory
from db.runs import submit_run
from ops.localserver import tail

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
TERMINAL_WF = ("SUCCESS", "FAILURE", "STOP")
IN_FLIGHT = ("SUBMITTED", "DISPATCHED", "RUNNING")


@dataclass
class Proc:
    name: str
    role: str  # master | worker
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    stopped: bool = False
    frozen_tasks: list[int] = field(default_factory=list)  # the guardian's group included
    frozen_guardian: int | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass(frozen=True)
class SideRecord:
    instance_id: int
    task_instance_id: int
    name: str
    attempt: int
    start_ns: int
    end_ns: int
    worker: str


@dataclass(frozen=True)
class LifeRecord:
    """A sign of life of an attempt: its start line or one of its ticks."""

    instance_id: int
    task_instance_id: int
    name: str
    attempt: int
    at_ns: int
    worker: str


class Cluster:
    """N masters and M workers as child processes sharing one database and znode root."""

    def __init__(
        self,
        base: Path,
        db_url: str,
        zk_hosts: str,
        zk_root: str,
        timeout_scale: float = 1.0,
        session_timeout_s: int = 4,
        tick_s: float | None = None,
    ) -> None:
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o711)
        self.db_url = db_url
        self.zk_hosts = zk_hosts
        self.zk_root = zk_root
        self.scale = timeout_scale
        self.session_timeout_s = session_timeout_s
        self.side_file = self.base / "side-effects.log"
        self.side_file.touch()
        self.life_file = self.base / "side-life.log"
        self.life_file.touch()
        self.tick_s = tick_s  # None: a start line only
        self.procs: dict[str, Proc] = {}
        self.engine = make_engine(DbSettings(url=db_url, managed=False), pool_size=2)
        self.sf = make_session_factory(self.engine)
        self.submitted: list[int] = []
        self._wf_seq = 0

    # processes -------------------------------------------------------------------------------
    def _env(self, name: str, role: str, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAGKEEPER_")}
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        data = self.base / name
        data.mkdir(exist_ok=True)
        env.update(
            DAGKEEPER_DB__URL=self.db_url,
            DAGKEEPER_DB__MANAGED="false",
            DAGKEEPER_ZK__HOSTS=self.zk_hosts,
            DAGKEEPER_ZK__ROOT=self.zk_root,
            DAGKEEPER_ZK__MANAGED="false",
            DAGKEEPER_ZK__AUTH_PASSWORD_FILE=str(password_file(self.base)),  # ACLs on
            DAGKEEPER_ZK__SESSION_TIMEOUT_S=str(self.session_timeout_s),
            DAGKEEPER_MASTER__HEARTBEAT_INTERVAL_S="1",
            DAGKEEPER_MASTER__RECONCILE_INTERVAL_S="1",
            DAGKEEPER_WORKER__HEARTBEAT_INTERVAL_S="1",
            DAGKEEPER_WORKER__REPORT_RETRY_DEADLINE_S="2",
            DAGKEEPER_DATA_DIR=str(data),
            DAGKEEPER_LOG_LEVEL="INFO",
        )
        if role == "worker":
            env["DAGKEEPER_WORKER__HOST"] = name
        env.update(extra)
        return env

    def start(self, name: str, role: str, **extra: str) -> Proc:
        p = self.procs.get(name)
        if p is None:
            p = Proc(name, role, self._env(name, role, extra), self.base / f"{name}.log")
            self.procs[name] = p
        assert not p.alive, f"{name} is running"
        with open(p.log_path, "ab") as out:
            out.write(f"==== start {name} ({role}) at {time.time():.3f}\n".encode())
            p.popen = subprocess.Popen(
                [sys.executable, "-m", "ops.cli", role],
                env=p.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        p.stopped = False
        return p

    def up(self, masters: int = 1, workers: int = 1) -> None:
        """Start masters m1..m<masters> and workers w1..w<workers>; wait until all registered."""
        for i in range(1, masters + 1):
            self.master(f"m{i}")
        for i in range(1, workers + 1):
            self.worker(f"w{i}")
        self.wait_registered(masters, workers)

    def master(self, name: str, **extra: str) -> Proc:
        return self.start(name, "master", **extra)

    def worker(self, name: str, **extra: str) -> Proc:
        return self.start(name, "worker", **extra)

    def restart(self, name: str) -> Proc:
        p = self.procs[name]
        return self.start(name, p.role)

    def task_pids(self, name: str) -> list[int]:
        """Pids of the children of a daemon (a worker's task process-group leaders)."""
        p = self.procs[name]
        try:
            return [c.pid for c in psutil.Process(p.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def guardian_pid(self, name: str) -> int | None:
        """Pid of a worker's guardian: the daemon's child running worker/guardian.py."""
        try:
            for child in psutil.Process(self.procs[name].pid).children():
                if any(arg.endswith("guardian.py") for arg in child.cmdline()):
                    return int(child.pid)
        except psutil.Error:
            pass
        return None

    def kill9(self, name: str, with_tasks: bool = True) -> None:
        """SIGKILL the daemon; ``with_tasks`` also its task process groups (a host crash)."""
        p = self.procs[name]
        if not p.alive:
            return
        groups = self.task_pids(name) if with_tasks else []
        os.kill(p.pid, signal.SIGKILL)
        for g in groups + p.frozen_tasks:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(g, signal.SIGKILL)
        assert p.popen is not None
        p.popen.wait()
        p.frozen_tasks = []
        self._note(p, "kill -9")

    def sigstop(self, name: str, with_tasks: bool = False) -> None:
        """Freeze the daemon (``with_tasks``: its guardian and task process groups too, a frozen
        host: the whole process tree)."""
        p = self.procs[name]
        os.kill(p.pid, signal.SIGSTOP)
        p.stopped = True
        if with_tasks:
            p.frozen_guardian = self.guardian_pid(name)
            p.frozen_tasks = self.task_pids(name)
            for g in p.frozen_tasks:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(g, signal.SIGSTOP)
        self._note(p, "SIGSTOP")

    def sigcont(self, name: str, task_grace_s: float = 2.0, first: str = "daemon") -> None:
        """Thaw a frozen worker. ``first`` = "daemon" (or "guardian"): that one first; the
        tasks of a frozen tree only after it had ``task_grace_s`` to kill them, then the rest.
        "tasks": every task, then the guardian, then the daemon, at once (the one order no
        watchdog can win against a task about to write)."""
        p = self.procs[name]
        guardian = [p.frozen_guardian] if p.frozen_guardian is not None else []
        tasks = [g for g in p.frozen_tasks if g not in guardian]
        order = {"daemon": [p.pid], "guardian": guardian, "tasks": tasks}[first]
        for pgid in order:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGCONT)  # the daemon and the guardian lead their groups
        if first != "tasks":
            deadline = time.monotonic() + task_grace_s * self.scale
            while time.monotonic() < deadline and any(group_alive(g) for g in tasks):
                time.sleep(0.05)
        for pgid in [p.pid, *guardian, *tasks]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGCONT)
        p.stopped, p.frozen_tasks, p.frozen_guardian = False, [], None
        self._note(p, f"SIGCONT ({first} first)")

    def terminate(self, name: str, timeout: float = 20.0) -> None:
        p = self.procs[name]
        if not p.alive:
            return
        assert p.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGCONT)
            for g in p.frozen_tasks:
                os.killpg(g, signal.SIGCONT)
            p.popen.send_signal(signal.SIGTERM)
        try:
            p.popen.wait(timeout * self.scale)
        except subprocess.TimeoutExpired:
            self.kill9(name)

    def stop_all(self) -> None:
        for name, p in self.procs.items():
            if p.alive:
                assert p.popen is not None
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGCONT)
                    p.popen.send_signal(signal.SIGTERM)
        for name, p in self.procs.items():
            if p.popen is not None:
                try:
                    p.popen.wait(15 * self.scale)
                except subprocess.TimeoutExpired:
                    self.kill9(name)
            for g in p.frozen_tasks:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(g, signal.SIGKILL)

    def close(self) -> None:
        self.stop_all()
        self.engine.dispose()

    def _note(self, p: Proc, what: str) -> None:
        with open(p.log_path, "ab") as out:
            out.write(f"==== harness: {what} {p.name} at {time.time():.3f}\n".encode())

    def logs(self, lines: int = 40) -> str:
        parts = []
        for name, p in self.procs.items():
            parts.append(f"--- {name} ({p.role}) {p.log_path}\n{tail(p.log_path, lines)}")
        return "\n".join(parts)

    def master_owning(self, instance_id: int) -> str | None:
        """Harness name of the master process that owns ``instance_id`` (owner = host-pid-x)."""
        owner = self.one("SELECT owner FROM workflow_instance WHERE id = :i", i=instance_id)
        if owner is None:
            return None
        for name, p in self.procs.items():
            if p.role == "master" and p.alive and f"-{p.pid}-" in f"{owner}":
                return name
        return None

    # workflows -------------------------------------------------------------------------------
    def task(self, body: str) -> str:
        """A SHELL command running ``body`` that appends its record to the side-effect file once
        ``body`` has finished (a killed task leaves no record), and its start line (and ticks)
        to the life file."""
        who = (
            "$DAGKEEPER_WORKFLOW_INSTANCE_ID $DAGKEEPER_TASK_INSTANCE_ID $DAGKEEPER_TASK_NAME"
            " $DAGKEEPER_ATTEMPT"
        )
        rec = f"{who} $s $e $DAGKEEPER_WORKER_ID"
        side = shlex.quote(str(self.side_file))
        alive = f'echo "{who} ${{EPOCHREALTIME/[.,]/}}000 $DAGKEEPER_WORKER_ID" >> {self.life_file}'
        life = f"{alive}; "
        if self.tick_s:  # a ticker in the task's group, dying with it or with the task's end
            life += (
                f"(while kill -0 $$ 2>/dev/null; do sleep {self.tick_s}; {alive}; done)"
                " >/dev/null 2>&1 & dk_tick=$!; trap 'kill $dk_tick 2>/dev/null' EXIT; "
            )
        return (
            f's=$(date +%s%N); {life}{body}; rc=$?; e=$(date +%s%N); echo "{rec}" >> {side};'
            " exit $rc"
        )

    def submit(self, tasks: list[dict[str, Any]], name: str | None = None, **spec: Any) -> int:
        """Create a workflow of ``tasks`` (``command`` = body wrapped by ``task``; a task without
        a command, e.g. a SUB_PROCESS, as it is) and run it."""
        self._wf_seq += 1
        raw = {
            "name": name or f"wf{self._wf_seq}",
            "tasks": [
                {"type": "SHELL", **t, "command": self.task(t["command"])} if "command" in t else t
                for t in tasks
            ],
            **spec,
        }
        wf_spec = parse_workflow_spec(raw)
        with self.sf.begin() as s:
            definition, _ = create_workflow(s, wf_spec)
            inst = submit_run(s, definition.id)
            iid = int(inst.id)
        self.submitted.append(iid)
        return iid

    # queries ---------------------------------------------------------------------------------
    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.sf.begin() as s:
            return list(s.execute(text(sql), params).all())

    def one(self, sql: str, **params: Any) -> Any:
        r = self.rows(sql, **params)
        return r[0][0] if r else None

    def state(self, instance_id: int) -> str:
        return str(self.one("SELECT state FROM workflow_instance WHERE id = :i", i=instance_id))

    def attempts(self, instance_id: int, name: str | None = None) -> list[Any]:
        sql = (
            "SELECT id, name, attempt, state, host, worker_id, start_time, end_time, pid,"
            " lease_token FROM task_instance WHERE workflow_instance_id = :i"
        )
        if name is not None:
            sql += " AND name = :n"
        return self.rows(sql + " ORDER BY name, attempt", i=instance_id, n=name)

    def task_state(self, task_instance_id: int) -> str:
        return str(self.one("SELECT state FROM task_instance WHERE id = :i", i=task_instance_id))

    def find_attempt(
        self, instance_id: int, name: str, state: str = "RUNNING", attempt: int | None = None
    ) -> Any:
        """The first attempt of task ``name`` in ``state`` (numbered ``attempt``), or None."""
        for r in self.attempts(instance_id, name):
            if r.state == state and (attempt is None or r.attempt == attempt):
                return r
        return None

    def wait(
        self, cond: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
    ) -> T:
        """Poll ``cond`` until truthy (scaled ``timeout``); on timeout fail with the logs."""
        deadline = time.monotonic() + timeout * self.scale
        while True:
            result = cond()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after {timeout * self.scale:.1f}s waiting for {what}\n{self.logs()}"
                )
            time.sleep(interval)

    def wait_registered(self, masters: int, workers: int, timeout: float = 30) -> None:
        from kazoo.client import KazooClient

        zk = KazooClient(hosts=self.zk_hosts, **kazoo_acl())
        zk.start(timeout=10 * self.scale)

        def count(path: str) -> int:
            try:
                return len(zk.get_children(path))
            except Exception:
                return 0

        def ready() -> bool:
            groups = []
            with contextlib.suppress(Exception):
                groups = zk.get_children(f"{self.zk_root}/nodes/workers")
            nw = sum(count(f"{self.zk_root}/nodes/workers/{g}") for g in groups)
            return count(f"{self.zk_root}/nodes/masters") >= masters and nw >= workers

        try:
            self.wait(ready, timeout, f"{masters} masters and {workers} workers to register")
        finally:
            zk.stop()
            zk.close()

    def wait_success(self, instance_id: int, timeout: float = 60) -> None:
        """Wait until the instance is terminal, then assert it succeeded (the logs if not)."""
        self.wait(
            lambda: self.state(instance_id) in TERMINAL_WF, timeout, f"instance {instance_id}"
        )
        assert self.state(instance_id) == "SUCCESS", self.logs()

    def wait_all_terminal(self, timeout: float) -> None:
        def done() -> bool:
            return all(self.state(i) in TERMINAL_WF for i in self.submitted)

        self.wait(done, timeout, f"instances {self.submitted} to finish")

    def side_records(self) -> list[SideRecord]:
        out = []
        for line in self.side_file.read_text().splitlines():
            parts = line.split()
            if len(parts) != 7:
                continue
            iid, tid, name, att, s, e, w = parts
            out.append(SideRecord(int(iid), int(tid), name, int(att), int(s), int(e), w))
        return out

    def life_records(self) -> list[LifeRecord]:
        out = []
        for line in self.life_file.read_text().splitlines():
            parts = line.split()
            if len(parts) == 6:
                iid, tid, name, att, at, w = parts
                out.append(LifeRecord(int(iid), int(tid), name, int(att), int(at), w))
        return out

    def doctor(self) -> tuple[int, str]:
        env = self._env("doctor", "doctor", {})
        res = subprocess.run(
            [sys.executable, "-m", "ops.cli", "doctor"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60 * self.scale,
        )
        return res.returncode, res.stdout + res.stderr

    # invariants ------------------------------------------------------------------------------
    def check_invariants(self, expect_success: bool = True, doctor: bool = True) -> list[str]:
        """Every broken invariant, as one line each ([] = all hold)."""
        bad: list[str] = []
        inst = self.rows("SELECT id, state, workflow_id FROM workflow_instance ORDER BY id")
        if sorted(r[0] for r in inst) != sorted(self.submitted):
            bad.append(f"instances {[r[0] for r in inst]} != submitted {self.submitted}")
        left = self.one("SELECT count(*) FROM command")
        if left:
            bad.append(f"{left} command(s) left unclaimed")
        for iid, state, _ in inst:
            if state not in TERMINAL_WF:
                bad.append(f"instance {iid} is {state}")
            elif expect_success and state != "SUCCESS":
                bad.append(f"instance {iid} is {state}, not SUCCESS")
        stuck = self.rows(
            "SELECT id, workflow_instance_id, name, attempt, state FROM task_instance"
            " WHERE state = ANY(:s)",
            s=list(IN_FLIGHT),
        )
        for r in stuck:
            bad.append(f"attempt {r[0]} (instance {r[1]} {r[2]}#{r[3]}) left {r[4]}")
        succ = self.rows(
            "SELECT workflow_instance_id, name, count(*) FROM task_instance"
            " WHERE state = 'SUCCESS' GROUP BY 1, 2 HAVING count(*) > 1"
        )
        for r in succ:
            bad.append(f"instance {r[0]} task {r[1]} has {r[2]} successful attempts")
        if expect_success:
            specs = self.rows(
                "SELECT wi.id, v.spec FROM workflow_instance wi JOIN workflow_version v"
                " ON v.workflow_id = wi.workflow_id AND v.version = wi.version"
            )
            ok = {
                (r[0], r[1])
                for r in self.rows(
                    "SELECT workflow_instance_id, name FROM task_instance WHERE state = 'SUCCESS'"
                )
            }
            for iid, spec in specs:
                for t in spec["tasks"]:
                    if (iid, t["name"]) not in ok:
                        bad.append(f"instance {iid} task {t['name']} never succeeded")
        bad += self.check_overlaps()
        # every successful attempt left exactly its own record
        records = {r.task_instance_id for r in self.side_records()}
        for (tid,) in self.rows("SELECT id FROM task_instance WHERE state = 'SUCCESS'"):
            if tid not in records:
                bad.append(f"successful attempt {tid} left no side-effect record")
        if doctor:
            rc, out = self.doctor()
            if rc != 0:
                bad.append(f"doctor exit {rc}: {out.strip()}")
        return bad

    def assert_invariants(self) -> None:
        """``check_invariants`` (doctor included) finds nothing broken; else the lines and logs."""
        bad = self.check_invariants()
        assert not bad, "\n".join(bad) + "\n" + self.logs()

    def check_overlaps(self) -> list[str]:
        """Two attempts of a task never ran at once: each lived from its start to its end record
        or, killed, to its last line in the life file (within ``tick_s`` of its death), and the
        next one started after that."""
        spans: dict[int, list[Any]] = {}  # task instance id -> [iid, name, attempt, worker,
        for r in self.side_records():  # start, until, ended]
            spans[r.task_instance_id] = [r.instance_id, r.name, r.attempt, r.worker]
            spans[r.task_instance_id] += [r.start_ns, r.end_ns, True]
        for life in self.life_records():
            span = spans.setdefault(
                life.task_instance_id,
                [life.instance_id, life.name, life.attempt, life.worker, life.at_ns, 0, False],
            )
            span[4], span[5] = min(span[4], life.at_ns), max(span[5], life.at_ns)
        by_task: dict[tuple[int, str], list[list[Any]]] = {}
        for span in spans.values():
            by_task.setdefault((span[0], span[1]), []).append(span)
        bad = []
        for (iid, name), runs in by_task.items():
            runs.sort(key=lambda s: s[4])
            for a, b in zip(runs, runs[1:], strict=False):
                if b[4] < a[5]:
                    bad.append(
                        f"instance {iid} task {name}: attempt {a[2]} on {a[3]}"
                        f"{'' if a[6] else ' (killed)'} and attempt {b[2]} on {b[3]} overlapped"
                        f" by {(a[5] - b[4]) / 1e9:.3f}s"
                    )
        return bad


def group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process is in process group ``pgid``."""
    for p in psutil.process_iter(["status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def pid_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie counts: nobody may reap it here)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
