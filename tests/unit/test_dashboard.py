"""The Grafana dashboard (deploy/grafana/dagkeeper.json) loads as JSON, every panel queries
Prometheus, and every metric it names is one dagkeeper defines (tests/integration/
test_observability_cluster.py checks them against live daemons' /metrics too)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import api.metrics
import master.observe  # noqa: F401 - its metrics and families are registered on import
from core import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dagkeeper.json"
METRIC = re.compile(r"\bdagkeeper_[a-z_]+")
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def dashboard_metrics(doc: dict) -> set[str]:
    """The metric families the dashboard's queries name (histogram/counter suffixes removed)."""
    names = set()
    for p in doc["panels"]:
        for t in p["targets"]:
            for m in METRIC.findall(t["expr"]):
                for suf in SUFFIXES:
                    m = m.removesuffix(suf)
                names.add(m)
    return names


def test_the_dashboard_loads_and_every_panel_queries_prometheus() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] and doc["title"] == "dagkeeper" and len(doc["panels"]) >= 15
    for p in doc["panels"]:
        assert p["targets"] and p["datasource"]["type"] == "prometheus", p["title"]
        assert all(t["expr"].strip() and t["refId"] for t in p["targets"]), p["title"]
    assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"])


def test_every_metric_the_dashboard_names_is_defined() -> None:
    defined = {n for n in REGISTRY._names_to_collectors if n.startswith("dagkeeper_")}
    defined = {n.removesuffix(s) for n in defined for s in SUFFIXES if n.endswith(s)} | defined
    # scrape-time gauges, declared by the daemons' sources
    defined |= {name for name, _ in api.metrics.CLUSTER_FAMILIES}
    defined |= {"dagkeeper_queue_held_back", "dagkeeper_master_owned_instances",
                "dagkeeper_cron_leader", "dagkeeper_worker_running_tasks",
                "dagkeeper_worker_capacity", "dagkeeper_zk_session_state",
                "dagkeeper_db_pool_connections"}  # fmt: skip
    named = dashboard_metrics(json.loads(DASHBOARD.read_text()))
    assert named - defined == set(), sorted(named - defined)
    assert metrics.HANDOFF._name in named  # the board shows the hand-off latency
