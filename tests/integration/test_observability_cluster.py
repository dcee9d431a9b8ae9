"""Alerts and metrics on a cluster of real daemon processes (``dagkeeper master`` / ``worker``
child processes, the API in-process): a kill -9'd worker produces one failover mail naming it and
the attempt that ran again; each daemon's /metrics, scraped after the diamond and a chain ran,
has its counters and histograms with non-zero values where work happened, and the hand-off
histogram's median is within 2x of the chain's hand-off p50 measured from the same run."""

from __future__ import annotations

import itertools
import json
import re
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alert_support import BASE_URL, Inbox, api_client, ok, smtp_server, text_of
from fastapi.testclient import TestClient
from harness import Cluster
from prometheus_client.parser import text_string_to_metric_families

from core.settings import Settings
from db.models_alerts import AlertChannel
from ops.localserver import free_port

REPO = Path(__file__).resolve().parents[2]
FAST_ALERTS = {
    "DAGKEEPER_ALERTS__POLL_INTERVAL_S": "0.2",
    "DAGKEEPER_ALERTS__RETRY_BASE_S": "0.5",
    "DAGKEEPER_ALERTS__BASE_URL": BASE_URL,
}


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    with api_client(settings) as client:
        yield client


def test_a_killed_worker_produces_one_failover_mail_naming_it_and_the_rerun(
    proc_cluster: Cluster, timeout_scale: float
) -> None:
    c = proc_cluster
    inbox, port = Inbox(), free_port()
    smtp = smtp_server(port, inbox)
    try:
        with c.sf.begin() as s:  # a global channel: it gets the cluster's failover alerts
            s.add(AlertChannel(name="noc", kind="EMAIL", is_global=True, params={
                "host": "127.0.0.1", "port": port, "recipients": ["noc@example.com"]}))  # fmt: skip
        c.master("m1", **FAST_ALERTS)
        c.worker("w1")
        c.wait_registered(1, 1)
        body = 'if [ "$DAGKEEPER_ATTEMPT" = 1 ]; then sleep 60; fi; echo done'
        iid = c.submit([{"name": "long", "command": body}])
        first = c.wait(lambda: c.find_attempt(iid, "long", "RUNNING", 1), 30, "attempt 1 RUNNING")
        assert first.host == "w1", first
        c.worker("w2")
        c.wait_registered(1, 2)
        c.kill9("w1")
        c.wait_success(iid, 60)
        second = c.find_attempt(iid, "long", "SUCCESS", 2)
        assert second is not None and second.host == "w2", c.attempts(iid)
        sent = c.wait(
            lambda: c.rows("SELECT id, status, title, content FROM alert"
                           " WHERE kind = 'WORKER_FAILOVER' AND status = 'SENT'"),
            30, "the failover alert SENT",
        )  # fmt: skip
        mails = c.wait(lambda: inbox.matching(lambda m: "is gone" in str(m["Subject"])), 10,
                       "the failover mail")  # fmt: skip
    finally:
        smtp.stop()
    assert len(sent) == 1 and len(mails) == 1, (sent, [m["Subject"] for m in mails])
    (row,) = sent
    assert row.content["dead_worker"] == first.worker_id and row.content["host"] == "w1", row
    (att,) = row.content["attempts"]
    assert att == {"task_instance_id": first.id, "task": "long", "attempt": 1,
                   "rerun_attempt": 2, "workflow_instance_id": iid}, att  # fmt: skip
    text = text_of(mails[0])
    assert first.worker_id in str(mails[0]["Subject"]), mails[0]["Subject"]
    assert "long" in text and "rerun_attempt" in text and f"{BASE_URL}/api/v1/task-instances/" \
        f"{first.id}/log/download" in text, text  # fmt: skip
    # one worker, one alert: nothing else about it is waiting to be sent
    assert c.one("SELECT count(*) FROM alert WHERE kind = 'WORKER_FAILOVER'") == 1


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict[str, Any], name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    base = name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    base = base.removesuffix("_bucket")
    fam = fams.get(base) or fams.get(name)
    assert fam is not None, f"{name} not exported: {sorted(fams)}"
    return sum(
        s.value for s in fam.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )  # fmt: skip


def histogram_median(fams: dict[str, Any], name: str) -> float:
    """The median a Prometheus histogram implies (histogram_quantile's linear interpolation)."""
    buckets = sorted(
        (float(s.labels["le"]), s.value) for s in fams[name].samples if s.name == f"{name}_bucket"
    )
    total = buckets[-1][1]
    rank, prev_le, prev_n = total / 2, 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_n) / max(n - prev_n, 1e-9)
        prev_le, prev_n = le, n
    return prev_le


def test_each_daemons_metrics_after_the_diamond_and_a_chain(
    proc_cluster: Cluster, api: TestClient, timeout_scale: float
) -> None:
    c = proc_cluster
    c.master("m1")
    c.worker("w1")
    c.wait_registered(1, 1)
    diamond = c.submit([
        {"name": "a", "command": "echo a"},
        {"name": "b", "command": "echo b", "depends_on": ["a"]},
        {"name": "c", "command": "echo c", "depends_on": ["a"]},
        {"name": "d", "command": "echo d", "depends_on": ["b", "c"]},
    ], name="diamond")  # fmt: skip
    c.wait_success(diamond, 60)
    n = 12
    chain = c.submit([{"name": f"t{i:02d}", "command": "true",
                       "depends_on": [f"t{i - 1:02d}"] if i else []} for i in range(n)],
                     name="chain")  # fmt: skip
    c.wait_success(chain, 90)
    rows = {r.name: r for r in c.attempts(chain)}
    hand = [
        (rows[f"t{i + 1:02d}"].start_time - rows[f"t{i:02d}"].end_time).total_seconds()
        for i in range(n - 1)
    ]
    chain_p50 = statistics.median(hand)

    cluster = ok(api.get("/api/v1/cluster"))
    ports = {m["host"] or m["id"]: m["data"]["metrics_port"] for m in
             itertools.chain(cluster["masters"], cluster["workers"])}  # fmt: skip
    assert all(isinstance(p, int) and p > 0 for p in ports.values()), ports
    (mport,) = [m["data"]["metrics_port"] for m in cluster["masters"]]
    (wport,) = [w["data"]["metrics_port"] for w in cluster["workers"]]
    master = families(httpx.get(f"http://127.0.0.1:{mport}/metrics", timeout=10).text)
    worker = families(httpx.get(f"http://127.0.0.1:{wport}/metrics", timeout=10).text)
    resp = api.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    apim = families(resp.text)

    # master: commands, transitions, latencies measured on the attempts it ran
    assert value(master, "dagkeeper_commands_claimed_total") >= 2
    assert value(master, "dagkeeper_workflow_instance_transitions_total", state="SUCCESS") >= 2
    assert value(master, "dagkeeper_task_dispatch_seconds_count") >= 4 + n
    assert value(master, "dagkeeper_task_duration_seconds_count", type="SHELL") >= 4 + n
    assert value(master, "dagkeeper_task_handoff_seconds_count") >= 3 + n - 1
    assert value(master, "dagkeeper_task_handoff_seconds_sum") > 0
    assert value(master, "dagkeeper_zk_session_state", state="CONNECTED") == 1
    assert value(master, "dagkeeper_cron_leader") == 1
    assert value(master, "dagkeeper_db_pool_connections", use="size") >= 1
    assert value(master, "dagkeeper_failovers_total", kind="worker") == 0
    assert "process_cpu_seconds" in master  # the client's process collector
    median = histogram_median(master, "dagkeeper_task_handoff_seconds")
    assert chain_p50 / 2 <= median <= chain_p50 * 2, (median, chain_p50, hand)

    # worker: claims, starts and ends by type, log bytes shipped
    assert value(worker, "dagkeeper_task_claims_total") >= 4 + n
    assert value(worker, "dagkeeper_task_starts_total", type="SHELL") >= 4 + n
    assert value(worker, "dagkeeper_task_ends_total", type="SHELL", state="SUCCESS") >= 4 + n
    assert value(worker, "dagkeeper_log_shipped_bytes_total") > 0
    assert value(worker, "dagkeeper_worker_capacity") >= 1
    assert value(worker, "dagkeeper_zk_session_state", state="CONNECTED") == 1
    assert "dagkeeper_claim_conflicts" in worker

    # API: its own requests by route template, and the cluster-wide gauges
    assert value(apim, "dagkeeper_api_request_seconds_count", route="/api/v1/cluster",
                 method="GET", status="200") >= 1  # fmt: skip
    assert value(apim, "dagkeeper_queue_depth", group="default") == 0
    assert value(apim, "dagkeeper_alerts_pending") == 0
    assert value(apim, "dagkeeper_zk_session_state", state="CONNECTED") == 1

    # every metric the Grafana dashboard names is exported by one of the three daemons
    board = json.loads((REPO / "deploy" / "grafana" / "dagkeeper.json").read_text())
    named = set()
    for p in board["panels"]:
        for t in p["targets"]:
            for m in re.findall(r"\bdagkeeper_[a-z_]+", t["expr"]):
                named.add(re.sub(r"_(bucket|count|sum|total)$", "", m))
    exported = set(master) | set(worker) | set(apim)
    assert named and named - exported == set(), sorted(named - exported)
