"""``dagkeeper status [--json] [--min-masters N] [--min-workers N] [--wait S]``: what runs and
where: every registered master (host, pid, epoch, instances, cron leader) and worker (host,
groups, running/capacity, draining), ZooKeeper, PostgreSQL (schema revision, live instances)
and the API. With ``--min-*`` it waits until that many are registered (a restart's check)."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from datetime import UTC, datetime
from typing import Any

from core.settings import Settings

CLIENT_ENV = "client.env"  # what `dagkeeper standalone` writes (ops.standalone)


def standalone_env(settings: Settings, environ: dict[str, str]) -> dict[str, str]:
    """A standalone cluster's settings (``<data_dir>/client.env`` and its ZooKeeper password
    file) when the environment names no cluster itself; {} otherwise."""
    if "DAGKEEPER_DB__URL" in environ or "DAGKEEPER_ZK__HOSTS" in environ:
        return {}
    path = settings.data_path / CLIENT_ENV
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("DAGKEEPER_") and not line.startswith("#"):
            out[key.strip()] = shlex.split(value)[0] if value.strip() else ""
    password = settings.data_path / "zk-password"
    if password.is_file() and "DAGKEEPER_ZK__AUTH_PASSWORD" not in environ:
        out["DAGKEEPER_ZK__AUTH_PASSWORD_FILE"] = str(password)
    return out


def _age(stamp: Any) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        return round((datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds(), 1)
    except ValueError:
        return None


def _zookeeper(settings: Settings, doc: dict[str, Any]) -> None:
    from coord import membership
    from coord.zk import ZkClient

    zk = ZkClient(settings.zk, name="status")
    try:
        zk.start()
        leader = membership.cron_leader(zk.client, zk.paths)
        for m in membership.masters(zk):
            d = m.data
            doc["masters"].append(
                {
                    "id": m.id,
                    "host": m.host,
                    "pid": d.get("pid"),
                    "epoch": m.epoch,
                    "instances": d.get("instances"),
                    "start_time": d.get("start_time"),
                    "heartbeat_age_s": _age(d.get("heartbeat")),
                    "cron_leader": leader == m.id,
                    "metrics_port": d.get("metrics_port"),
                }
            )
        drains = set(zk.children(zk.paths.drains()))
        for w in membership.workers(zk):
            d = w.data
            doc["workers"].append(
                {
                    "id": w.id,
                    "host": w.host,
                    "pid": d.get("pid"),
                    "epoch": w.epoch,
                    "groups": w.groups,
                    "running": d.get("load"),
                    "capacity": d.get("capacity"),
                    "draining": bool(d.get("draining")) or w.id in drains,
                    "log_server": d.get("log_server") or None,
                    "metrics_port": d.get("metrics_port"),
                }
            )
        doc["drain_requests"] = sorted(drains)
        doc["zookeeper"]["ok"] = True
    except Exception as exc:  # reported, never a stack trace
        doc["zookeeper"]["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    finally:
        zk.stop()


def _postgresql(settings: Settings, doc: dict[str, Any]) -> None:
    from alembic.script import ScriptDirectory
    from sqlalchemy import text

    from core.states import WORKFLOW_TERMINAL, values
    from db.engine import make_engine
    from ops.migrate import alembic_config

    pg = doc["postgresql"]
    engine = make_engine(settings.db, pool_size=1)
    try:
        with engine.connect() as conn:
            pg["revision"] = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            rows = conn.execute(
                text(
                    "SELECT state, count(*) FROM workflow_instance WHERE state <> ALL(:terminal)"
                    " GROUP BY state ORDER BY state"
                ),
                {"terminal": values(WORKFLOW_TERMINAL)},
            ).all()
            pg["live_instances"] = {str(s): int(n) for s, n in rows}
            pg["commands_waiting"] = int(
                conn.execute(text("SELECT count(*) FROM command")).scalar_one()
            )
        pg["newest"] = ScriptDirectory.from_config(alembic_config(settings.db)).get_current_head()
        pg["ok"] = True
    except Exception as exc:
        pg["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    finally:
        engine.dispose()


def _api(settings: Settings, doc: dict[str, Any], url: str | None) -> None:
    import httpx

    host = settings.api.host
    url = (
        url
        or os.environ.get("DAGKEEPER_URL")
        or (f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{settings.api.port}")
    )
    doc["api"] = {"url": url}
    try:
        r = httpx.get(url.rstrip("/") + "/ready", timeout=2)
        doc["api"]["ready"] = r.status_code == 200
    except httpx.HTTPError as exc:
        doc["api"]["ready"], doc["api"]["error"] = False, type(exc).__name__


def collect(settings: Settings, api: bool = True, api_url: str | None = None) -> dict[str, Any]:
    """The status document (what ``--json`` prints)."""
    url = settings.db.url
    doc: dict[str, Any] = {
        "zookeeper": {"hosts": settings.zk.hosts, "root": settings.zk.root, "ok": False},
        "postgresql": {"url": url.split("@", 1)[-1] if "@" in url else url, "ok": False},
        "masters": [],
        "workers": [],
        "drain_requests": [],
    }
    _zookeeper(settings, doc)
    _postgresql(settings, doc)
    if api:
        _api(settings, doc, api_url)
    return doc


def enough(doc: dict[str, Any], min_masters: int, min_workers: int) -> tuple[bool, str]:
    """Pure: are at least that many masters and (not draining) workers registered?"""
    m = len(doc["masters"])
    w = sum(1 for x in doc["workers"] if not x.get("draining"))
    ok = m >= min_masters and w >= min_workers
    return ok, f"{m} master(s) of {min_masters}, {w} worker(s) of {min_workers} registered"


def render(doc: dict[str, Any]) -> str:
    """Pure: the status as text lines."""
    zk, pg = doc["zookeeper"], doc["postgresql"]
    lines = [
        f"ZooKeeper   {zk['hosts']} {zk['root']}: "
        + ("ok" if zk["ok"] else f"unreachable ({zk.get('error')})")
    ]
    if pg["ok"]:
        rev = pg.get("revision")
        fresh = (
            "newest"
            if rev == pg.get("newest")
            else f"newest is {pg.get('newest')}: run dagkeeper migrate"
        )
        live = ", ".join(f"{n} {s}" for s, n in pg.get("live_instances", {}).items()) or "none"
        lines.append(
            f"PostgreSQL  {pg['url']}: schema {rev} ({fresh}); live instances: {live};"
            f" commands waiting: {pg.get('commands_waiting')}"
        )
    else:
        lines.append(f"PostgreSQL  {pg['url']}: unreachable ({pg.get('error')})")
    if "api" in doc:
        a = doc["api"]
        state = "ready" if a.get("ready") else "not answering" if a.get("error") else "not ready"
        lines.append(f"API         {a['url']}: {state}")
    lines.append(f"masters     {len(doc['masters'])}")
    for m in doc["masters"]:
        lead = ", cron leader" if m["cron_leader"] else ""
        lines.append(
            f"  {m['id']}  host {m['host']} pid {m['pid']} epoch {m['epoch']}:"
            f" {m['instances']} instance(s){lead}; heartbeat {m['heartbeat_age_s']}s ago"
        )
    lines.append(f"workers     {len(doc['workers'])}")
    for w in doc["workers"]:
        drain = ", DRAINING" if w["draining"] else ""
        lines.append(
            f"  {w['id']}  host {w['host']} pid {w['pid']} epoch {w['epoch']}:"
            f" groups {','.join(w['groups'])}, running {w['running']} of {w['capacity']}{drain}"
        )
    return "\n".join(lines)


def main(
    settings: Settings,
    api_url: str | None = None,
    as_json: bool = False,
    min_masters: int = 0,
    min_workers: int = 0,
    wait_s: float = 0.0,
) -> int:
    """0: both servers answer (and the minimums are met); 1: the minimums were not met within
    ``wait_s``; 2: ZooKeeper or PostgreSQL cannot be reached."""
    deadline = time.monotonic() + wait_s
    while True:
        doc = collect(settings, api_url=api_url)
        ok, why = enough(doc, min_masters, min_workers)
        if ok or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    print(json.dumps(doc, indent=2) if as_json else render(doc))
    if not (doc["zookeeper"]["ok"] and doc["postgresql"]["ok"]):
        return 2
    if not ok:
        print(f"dagkeeper status: {why}", file=sys.stderr)
        return 1
    return 0


def settings_for_status() -> tuple[Settings, str | None]:
    """The settings from the environment, or a standalone cluster's (``client.env``) when the
    environment names none; and the API's URL when that file gives it."""
    settings = Settings()
    extra = standalone_env(settings, dict(os.environ))
    if not extra:
        return settings, None
    nested: dict[str, Any] = {}
    for key, value in extra.items():
        if key == "DAGKEEPER_URL":
            continue
        parts = key.removeprefix("DAGKEEPER_").lower().split("__")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return Settings(**nested), extra.get("DAGKEEPER_URL")
