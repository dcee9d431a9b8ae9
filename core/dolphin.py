"""DolphinScheduler 3.x workflow exports, read as dagkeeper specs (pure). Each exported workflow
(``processDefinition`` or ``workflowDefinition``, its task definitions and relations, an optional
schedule) becomes a spec, a schedule and the notes on what could not be mapped. SHELL, PYTHON,
SQL, HTTP, SUB_PROCESS, DEPENDENT, CONDITIONS and SWITCH map; any other type becomes a SHELL
task that fails saying so."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from core.states import TaskState

UNMAPPED_EXIT = 'echo "dagkeeper: DolphinScheduler task type {t} was not imported" >&2; exit 1'
PRIORITIES = ("HIGHEST", "HIGH", "MEDIUM", "LOW", "LOWEST")
TIMEOUT_STRATEGY = {"WARN": "WARN", "FAILED": "FAILED", "WARNFAILED": "WARN_FAILED"}


@dataclass
class DsWorkflow:
    code: int
    name: str
    spec: dict[str, Any]
    release_state: str
    schedule: dict[str, Any] | None
    # task name -> code of the DolphinScheduler workflow its SUB_PROCESS runs
    sub_refs: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def is_export(doc: Any) -> bool:
    items = doc if isinstance(doc, list) else [doc]
    return bool(items) and all(
        isinstance(i, dict) and ("processDefinition" in i or "workflowDefinition" in i)
        for i in items
    )


def _obj(v: Any) -> Any:
    """DolphinScheduler writes some nested JSON as strings (globalParams, older taskParams)."""
    if isinstance(v, str) and v.strip()[:1] in ("{", "["):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def _props(items: Any) -> dict[str, str]:
    """``[{prop, direct, type, value}]`` -> ``{prop: value}`` for IN parameters."""
    out = {}
    for p in _obj(items) or []:
        if isinstance(p, dict) and p.get("prop") and str(p.get("direct", "IN")).upper() == "IN":
            out[str(p["prop"])] = "" if p.get("value") is None else str(p["value"])
    return out


def _minutes(v: Any) -> float | None:
    try:
        n = float(v or 0)
    except (TypeError, ValueError):
        return None
    return n * 60 if n > 0 else None


def convert(doc: Any) -> list[DsWorkflow]:
    """Every workflow of an export (a list, or one object); ValueError naming what is broken."""
    items = doc if isinstance(doc, list) else [doc]
    names = {}  # workflow code -> name, for DEPENDENT items and SUB_PROCESS across the file
    tasks_of: dict[int, dict[int, str]] = {}
    for item in items:
        pd = item.get("processDefinition") or item.get("workflowDefinition") or {}
        code = int(pd.get("code") or 0)
        names[code] = str(pd.get("name") or "")
        tasks_of[code] = {int(t.get("code") or 0): str(t.get("name")) for t in _task_defs(item)}
    return [_workflow(item, names, tasks_of) for item in items]


def _task_defs(item: dict[str, Any]) -> list[dict[str, Any]]:
    raw = _obj(item.get("taskDefinitionList") or item.get("taskDefinitionJson") or [])
    return [t for t in raw if isinstance(t, dict)] if isinstance(raw, list) else []


def _workflow(
    item: dict[str, Any], names: dict[int, str], tasks_of: dict[int, dict[int, str]]
) -> DsWorkflow:
    pd = item.get("processDefinition") or item.get("workflowDefinition") or {}
    name = str(pd.get("name") or "").strip()
    if not name:
        raise ValueError("processDefinition.name: every exported workflow needs a name")
    code = int(pd.get("code") or 0)
    by_code = tasks_of.get(code, {})
    relations = _obj(
        item.get("processTaskRelationList") or item.get("workflowTaskRelationList") or []
    )
    upstream: dict[int, list[str]] = {}
    for r in relations or []:
        pre, post = int(r.get("preTaskCode") or 0), int(r.get("postTaskCode") or 0)
        if pre and post and pre in by_code:
            upstream.setdefault(post, []).append(by_code[pre])
    wf = DsWorkflow(code, name, {}, str(pd.get("releaseState") or "ONLINE").upper(), None)
    tasks = [_task(t, upstream.get(int(t.get("code") or 0), []), by_code, names, tasks_of, wf)
             for t in _task_defs(item)]  # fmt: skip
    spec: dict[str, Any] = {"name": name, "description": str(pd.get("description") or "")}
    params = _props(pd.get("globalParamList") or pd.get("globalParams"))
    if params:
        spec["params"] = params
    if (timeout := _minutes(pd.get("timeout"))) is not None:
        spec["timeout_s"] = timeout
    if pd.get("executionType"):
        spec["execution_type"] = str(pd["executionType"]).upper()
    sched = item.get("schedule")
    if isinstance(sched, dict) and sched.get("crontab"):
        wf.schedule = _schedule(sched)
        spec["timezone"] = wf.schedule["timezone"]
    spec["tasks"] = tasks
    wf.spec = spec
    return wf


def _schedule(s: dict[str, Any]) -> dict[str, Any]:
    def when(key: str) -> str | None:
        v = s.get(key)
        return str(v).replace(" ", "T") if v else None

    priority = str(
        s.get("workflowInstancePriority") or s.get("processInstancePriority") or "MEDIUM"
    )
    return {
        "cron": str(s["crontab"]),
        "timezone": str(s.get("timezoneId") or "UTC"),
        "start": when("startTime"),
        "end": when("endTime"),
        "failure_strategy": str(s.get("failureStrategy") or "CONTINUE").upper(),
        "priority": priority.upper() if priority.upper() in PRIORITIES else "MEDIUM",
        "worker_group": s.get("workerGroup") if s.get("workerGroup") != "default" else None,
        "misfire": "FIRE_ONCE",
        "enabled": str(s.get("releaseState") or "ONLINE").upper() == "ONLINE",
    }


def _task(
    t: dict[str, Any],
    depends_on: list[str],
    by_code: dict[int, str],
    names: dict[int, str],
    tasks_of: dict[int, dict[int, str]],
    wf: DsWorkflow,
) -> dict[str, Any]:
    name = str(t.get("name") or "").strip()
    kind = str(t.get("taskType") or "").upper()
    p = _obj(t.get("taskParams")) or {}
    p = p if isinstance(p, dict) else {}
    out: dict[str, Any] = {"name": name, "type": kind, "depends_on": depends_on}
    if t.get("description"):
        out["description"] = str(t["description"])
    if str(t.get("taskPriority") or "MEDIUM").upper() in PRIORITIES:
        out["priority"] = str(t.get("taskPriority") or "MEDIUM").upper()
    if t.get("workerGroup") and t["workerGroup"] != "default":
        out["worker_group"] = str(t["workerGroup"])
    if int(t.get("failRetryTimes") or 0) > 0:
        out["retries"] = int(t["failRetryTimes"])
        out["retry_interval_s"] = _minutes(t.get("failRetryInterval")) or 0
    if str(t.get("timeoutFlag") or "CLOSE").upper() == "OPEN" and _minutes(t.get("timeout")):
        out["timeout_s"] = _minutes(t.get("timeout"))
        strategy = str(t.get("timeoutNotifyStrategy") or "WARN").upper()
        out["timeout_strategy"] = TIMEOUT_STRATEGY.get(strategy, "WARN")
    local = _props(p.get("localParams"))
    if local:
        out["params"] = local
    note = wf.notes.append
    if str(t.get("flag") or "YES").upper() == "NO":
        note(f"{wf.name}: task '{name}' is disabled (flag NO) there; imported as a normal task")
    if int(t.get("delayTime") or 0) > 0:
        note(f"{wf.name}: task '{name}': delayTime {t['delayTime']} min is not mapped")
    if p.get("resourceList"):
        note(f"{wf.name}: task '{name}': resource files are not mapped (resourceList)")
    mapper = MAPPERS.get(kind)
    if mapper is None:
        note(f"{wf.name}: task '{name}': type {kind} is not mapped; it fails when it runs")
        out.update(type="SHELL", command=UNMAPPED_EXIT.format(t=kind))
        return out
    out.update(mapper(p, name, by_code, names, tasks_of, wf))
    return out


def _shell(p: dict[str, Any], *_: Any) -> dict[str, Any]:
    return {"command": str(p.get("rawScript") or "")}


def _python(p: dict[str, Any], *_: Any) -> dict[str, Any]:
    return {"script": str(p.get("rawScript") or "")}


def _sql(p: dict[str, Any], name: str, _b: Any, _n: Any, _t: Any, wf: DsWorkflow) -> dict[str, Any]:
    ds = p.get("datasource")
    target = f"ds_{ds}"
    wf.notes.append(
        f"{wf.name}: task '{name}': DolphinScheduler datasource {ds} ({p.get('type')}) is read"
        f" as the dagkeeper datasource {target!r} (create it: POST /datasources)"
    )
    out: dict[str, Any] = {"datasource": target, "sql": str(p.get("sql") or "")}
    if p.get("preStatements"):
        out["pre_statements"] = [str(x) for x in p["preStatements"]]
    if p.get("postStatements"):
        out["post_statements"] = [str(x) for x in p["postStatements"]]
    if str(p.get("sqlType", "")) in ("0", "1"):
        out["query"] = str(p["sqlType"]) == "0"
    if int(p.get("displayRows") or 0) > 0:
        out["max_rows"] = int(p["displayRows"])
    if p.get("sendEmail"):
        out["send_email"] = True
        if int(p.get("displayRows") or 0) > 0:
            out["display_rows"] = int(p["displayRows"])
        if p.get("title"):
            out["email_title"] = str(p["title"])
        if p.get("groupId"):
            wf.notes.append(
                f"{wf.name}: task '{name}': alert group id {p['groupId']} is not mapped (set"
                " alert_group to a dagkeeper alert group's name)"
            )
    if p.get("udfs"):
        wf.notes.append(f"{wf.name}: task '{name}': udfs are not mapped")
    return out


def _http(
    p: dict[str, Any], name: str, _b: Any, _n: Any, _t: Any, wf: DsWorkflow
) -> dict[str, Any]:
    url = str(p.get("url") or "")
    headers: dict[str, str] = {}
    query: list[tuple[str, str]] = []
    body: dict[str, str] = {}
    for hp in _obj(p.get("httpParams")) or []:
        kind = str(hp.get("httpParametersType") or "").upper()
        key, value = str(hp.get("prop") or ""), str(hp.get("value") or "")
        if kind == "HEADERS":
            headers[key] = value
        elif kind == "BODY":
            body[key] = value
        elif kind == "PARAMETER":
            query.append((key, value))
    if query:
        url += ("&" if "?" in url else "?") + urlencode(query)
    out: dict[str, Any] = {"url": url, "method": str(p.get("httpMethod") or "GET").upper()}
    if headers:
        out["headers"] = headers
    if p.get("httpBody"):
        out["body"] = _obj(p["httpBody"])
    elif body:
        out["body"] = body
    check, cond = str(p.get("httpCheckCondition") or "STATUS_CODE_DEFAULT"), p.get("condition")
    if check == "STATUS_CODE_DEFAULT":
        out["success_codes"] = [200]
    elif check == "STATUS_CODE_CUSTOM" and str(cond or "").strip().isdigit():
        out["success_codes"] = [int(str(cond).strip())]
    elif check == "BODY_CONTAINS" and cond:
        out["expect_body_contains"] = str(cond)
    else:
        wf.notes.append(f"{wf.name}: task '{name}': httpCheckCondition {check} is not mapped")
    timeouts = [float(p[k]) for k in ("connectTimeout", "socketTimeout") if p.get(k)]
    if timeouts and max(timeouts) > 0:
        out["timeout"] = max(timeouts) / 1000
    return out


def _sub_process(
    p: dict[str, Any], name: str, _b: Any, names: dict[int, str], _t: Any, wf: DsWorkflow
) -> dict[str, Any]:
    child = int(p.get("processDefinitionCode") or p.get("workflowDefinitionCode") or 0)
    if child not in names:
        raise ValueError(
            f"{wf.name}: SUB_PROCESS task '{name}' runs DolphinScheduler workflow {child},"
            " which is not in this export (export it together with its parent)"
        )
    wf.sub_refs[name] = child
    return {"workflow_id": 0}  # resolved to the imported child's id


def _dependent(
    p: dict[str, Any],
    name: str,
    _b: Any,
    names: dict[int, str],
    tasks_of: dict[int, dict[int, str]],
    wf: DsWorkflow,
) -> dict[str, Any]:
    dep = _obj(p.get("dependence")) or {}
    groups = []
    for g in dep.get("dependTaskList") or []:
        items = []
        for it in g.get("dependItemList") or []:
            code = int(it.get("definitionCode") or 0)
            target = it.get("definitionName") or names.get(code)
            if not target:
                raise ValueError(
                    f"{wf.name}: DEPENDENT task '{name}' depends on DolphinScheduler workflow"
                    f" {code}, which is not in this export"
                )
            item: dict[str, Any] = {"workflow": str(target), "window": str(it.get("dateValue"))}
            task_code = int(it.get("depTaskCode") or 0)
            if task_code > 0:
                task = it.get("depTaskName") or tasks_of.get(code, {}).get(task_code)
                if not task:
                    raise ValueError(
                        f"{wf.name}: DEPENDENT task '{name}': task {task_code} of {target!r}"
                        " is not in this export"
                    )
                item["task"] = str(task)
            items.append(item)
        groups.append({"relation": str(g.get("relation") or "AND").upper(), "items": items})
    out: dict[str, Any] = {
        "dependencies": {"relation": str(dep.get("relation") or "AND").upper(), "groups": groups}
    }
    if p.get("checkInterval"):
        out["check_interval_s"] = float(p["checkInterval"])
    return out


def _conditions(
    p: dict[str, Any], name: str, by_code: dict[int, str], _n: Any, _t: Any, wf: DsWorkflow
) -> dict[str, Any]:
    result = _obj(p.get("conditionResult")) or {}
    dep = _obj(p.get("dependence")) or {}
    statuses = {
        str(it.get("status") or "").upper()
        for g in dep.get("dependTaskList") or []
        for it in g.get("dependItemList") or []
    }
    if statuses - {TaskState.SUCCESS.value, ""}:
        wf.notes.append(
            f"{wf.name}: CONDITIONS task '{name}': its test of upstream states is read as"
            " 'every upstream succeeded' (dagkeeper's CONDITIONS rule)"
        )

    def names_of(key: str) -> list[str]:
        codes = result.get(key) or []
        codes = codes if isinstance(codes, list) else [codes]
        return [by_code[int(c)] for c in codes if int(c) in by_code]

    return {"on_success": names_of("successNode"), "on_failure": names_of("failedNode")}


def _expression(text: str) -> str:
    """DolphinScheduler's switch conditions are JavaScript; the common operators are kept."""
    return re.sub(r"\s*&&\s*", " and ", re.sub(r"\s*\|\|\s*", " or ", text)).replace("===", "==")


def _switch(
    p: dict[str, Any], name: str, by_code: dict[int, str], _n: Any, _t: Any, wf: DsWorkflow
) -> dict[str, Any]:
    result = _obj(p.get("switchResult")) or {}

    def node(v: Any) -> str | None:
        v = v[0] if isinstance(v, list) and v else v
        return by_code.get(int(v)) if v not in (None, "", []) else None

    cases = []
    for c in result.get("dependTaskList") or []:
        target = node(c.get("nextNode"))
        if target:
            cases.append({"when": _expression(str(c.get("condition") or "")), "next": target})
    out: dict[str, Any] = {"cases": cases}
    default = node(result.get("nextNode"))
    if default:
        out["default"] = default
    return out


MAPPERS = {
    "SHELL": _shell,
    "PYTHON": _python,
    "SQL": _sql,
    "HTTP": _http,
    "SUB_PROCESS": _sub_process,
    "DEPENDENT": _dependent,
    "CONDITIONS": _conditions,
    "SWITCH": _switch,
}
