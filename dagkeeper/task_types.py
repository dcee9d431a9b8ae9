"""One SDK class per task type (the README's "Task types" fields, same names): Shell, Python,
Sql, Procedure, Http, Spark, SubWorkflow, Dependent, Conditions, Switch, FanOut. The server
validates them; the classes only shape the spec."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Unpack

from dagkeeper.errors import DefinitionError
from dagkeeper.tasks import BaseTask, Common, params_dict

if TYPE_CHECKING:
    from dagkeeper.workflow import Workflow

# resolve(reference, task name) -> a workflow id; used for SUB_PROCESS at submit time
Resolver = Callable[[Any, str], int]


class Shell(BaseTask):
    TYPE = "SHELL"

    def __init__(self, name: str, command: str, **common: Unpack[Common]) -> None:
        super().__init__(name, {"command": command}, **common)


class Python(BaseTask):
    TYPE = "PYTHON"

    def __init__(
        self, name: str, script: str, *, interpreter: str | None = None, **common: Unpack[Common]
    ) -> None:
        super().__init__(name, {"script": script, "interpreter": interpreter}, **common)


class Sql(BaseTask):
    TYPE = "SQL"

    def __init__(
        self,
        name: str,
        datasource: str,
        sql: str,
        *,
        pre_statements: Sequence[str] | None = None,
        post_statements: Sequence[str] | None = None,
        query: bool | None = None,
        max_rows: int | None = None,
        output_first_row: bool | None = None,
        send_email: bool | None = None,
        display_rows: int | None = None,
        email_title: str | None = None,
        alert_group: str | None = None,
        **common: Unpack[Common],
    ) -> None:
        fields = {
            "datasource": datasource,
            "sql": sql,
            "pre_statements": list(pre_statements) if pre_statements is not None else None,
            "post_statements": list(post_statements) if post_statements is not None else None,
            "query": query,
            "max_rows": max_rows,
            "output_first_row": output_first_row,
            "send_email": send_email,
            "display_rows": display_rows,
            "email_title": email_title,
            "alert_group": alert_group,
        }
        super().__init__(name, fields, **common)


class Procedure(BaseTask):
    TYPE = "PROCEDURE"

    def __init__(
        self,
        name: str,
        datasource: str,
        procedure: str,
        *,
        in_params: Mapping[str, Any] | None = None,
        out_params: Sequence[str] | Mapping[str, str] | None = None,
        arg_order: Sequence[str] | None = None,
        **common: Unpack[Common],
    ) -> None:
        outs = dict(out_params) if isinstance(out_params, Mapping) else out_params
        fields = {
            "datasource": datasource,
            "procedure": procedure,
            "in_params": dict(in_params) if in_params is not None else None,
            "out_params": list(outs) if isinstance(outs, Sequence) else outs,
            "arg_order": list(arg_order) if arg_order is not None else None,
        }
        super().__init__(name, fields, **common)


class Http(BaseTask):
    TYPE = "HTTP"

    def __init__(
        self,
        name: str,
        url: str,
        *,
        method: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float | None = None,
        success_codes: Sequence[int | str] | None = None,
        expect_body_contains: str | None = None,
        follow_redirects: bool | None = None,
        **common: Unpack[Common],
    ) -> None:
        fields = {
            "url": url,
            "method": method.upper() if method else None,
            "headers": dict(headers) if headers is not None else None,
            "body": body,
            "timeout": timeout,
            "success_codes": list(success_codes) if success_codes is not None else None,
            "expect_body_contains": expect_body_contains,
            "follow_redirects": follow_redirects,
        }
        super().__init__(name, fields, **common)


SPARK_OPTIONS = (
    "main_class", "master", "deploy_mode", "app_name", "driver_memory", "executor_memory",
    "driver_cores", "executor_cores", "num_executors", "queue", "spark_submit",
)  # fmt: skip


class Spark(BaseTask):
    """``app`` (a jar or .py) with spark-submit's options as keyword arguments (``main_class``,
    ``master``, ``deploy_mode``, ``driver_memory``, ``num_executors``, ``queue``, ...)."""

    TYPE = "SPARK"

    def __init__(
        self,
        name: str,
        app: str,
        *,
        args: Sequence[str] | None = None,
        conf: Mapping[str, str] | None = None,
        py_files: Sequence[str] | None = None,
        jars: Sequence[str] | None = None,
        files: Sequence[str] | None = None,
        main_class: str | None = None,
        master: str | None = None,
        deploy_mode: str | None = None,
        app_name: str | None = None,
        driver_memory: str | None = None,
        executor_memory: str | None = None,
        driver_cores: int | None = None,
        executor_cores: int | None = None,
        num_executors: int | None = None,
        queue: str | None = None,
        spark_submit: str | None = None,
        **common: Unpack[Common],
    ) -> None:
        values = locals()
        fields: dict[str, Any] = {"app": app}
        for key in ("args", "py_files", "jars", "files"):
            fields[key] = list(values[key]) if values[key] is not None else None
        fields["conf"] = dict(conf) if conf is not None else None
        fields.update({k: values[k] for k in SPARK_OPTIONS})
        super().__init__(name, fields, **common)


class SubWorkflow(BaseTask):
    """SUB_PROCESS: run another workflow as a child instance. ``workflow`` is an SDK
    ``Workflow`` (submitted first by the parent's ``submit()``), a workflow name or an id."""

    TYPE = "SUB_PROCESS"

    def __init__(self, name: str, child: Workflow | str | int, **common: Unpack[Common]) -> None:
        self.child = child
        super().__init__(name, None, **common)

    def type_fields(self, resolve: Any = None) -> dict[str, Any]:
        if isinstance(self.child, int) and not isinstance(self.child, bool):
            return {"workflow_id": self.child}
        if resolve is None:
            ref = getattr(self.child, "name", self.child)
            raise DefinitionError(
                f"task {self.name!r}: the sub-workflow {ref!r} has no id here; submit() the"
                " parent (it submits the child first) or pass the child's id"
            )
        return {"workflow_id": resolve(self.child, self.name)}


def dependency(
    workflow: Workflow | str | int, *, task: str | None = None, window: str = "today"
) -> dict[str, Any]:
    """One DEPENDENT item: a successful run of ``workflow`` (or of its ``task``) in ``window``."""
    item: dict[str, Any] = {"workflow": getattr(workflow, "name", workflow), "window": window}
    if task is not None:
        item["task"] = task
    return item


class Dependent(BaseTask):
    """Wait for other workflows: ``items`` (one AND group of ``dependency(...)`` items), or the
    full ``dependencies={"relation", "groups": [{"relation", "items"}]}``."""

    TYPE = "DEPENDENT"

    def __init__(
        self,
        name: str,
        items: Sequence[Mapping[str, Any]] | None = None,
        *,
        dependencies: Mapping[str, Any] | None = None,
        relation: str | None = None,
        check_interval_s: float | None = None,
        dependence_timeout_s: float | None = None,
        **common: Unpack[Common],
    ) -> None:
        if (items is None) == (dependencies is None):
            raise DefinitionError(f"task {name!r}: give items or dependencies (one of them)")
        deps = dict(dependencies) if dependencies is not None else {
            "relation": (relation or "AND").upper(),
            "groups": [{"relation": "AND", "items": [dict(i) for i in items or ()]}],
        }  # fmt: skip
        fields = {
            "dependencies": deps,
            "check_interval_s": check_interval_s,
            "dependence_timeout_s": dependence_timeout_s,
        }
        super().__init__(name, fields, **common)


def _branch(node: BaseTask, targets: Sequence[BaseTask | str]) -> list[str]:
    """Names of branch targets; a target given as a task gets the edge node -> target."""
    names = []
    for t in targets:
        if isinstance(t, BaseTask):
            t.set_upstream(node)
            names.append(t.name)
        else:
            names.append(str(t))
    return names


class Conditions(BaseTask):
    """Runs ``on_success`` if every upstream succeeded, else ``on_failure``; the targets given
    as tasks are made its direct downstream tasks."""

    TYPE = "CONDITIONS"

    def __init__(
        self,
        name: str,
        *,
        on_success: Sequence[BaseTask | str] = (),
        on_failure: Sequence[BaseTask | str] = (),
        **common: Unpack[Common],
    ) -> None:
        super().__init__(name, None, **common)
        self.fields["on_success"] = _branch(self, on_success)
        self.fields["on_failure"] = _branch(self, on_failure)


class Switch(BaseTask):
    """The ``next`` of the first case whose expression holds, else ``default``; cases are
    ``(expression, task)`` pairs (or ``{"when", "next"}``)."""

    TYPE = "SWITCH"

    def __init__(
        self,
        name: str,
        cases: Sequence[tuple[str, BaseTask | str] | Mapping[str, Any]],
        *,
        default: BaseTask | str | None = None,
        **common: Unpack[Common],
    ) -> None:
        super().__init__(name, None, **common)
        out = []
        for case in cases:
            when, nxt = (case["when"], case["next"]) if isinstance(case, Mapping) else case
            out.append({"when": str(when), "next": _branch(self, [nxt])[0]})
        self.fields["cases"] = out
        if default is not None:
            self.fields["default"] = _branch(self, [default])[0]


class FanOut(BaseTask):
    """FANOUT: ``command`` (or ``script``) on every target host, each with its own parameters;
    succeeds only if every target does. Targets: ``group=`` (every live worker host of a
    group), or ``hosts=[...]``."""

    TYPE = "FANOUT"

    def __init__(
        self,
        name: str,
        command: str | None = None,
        *,
        script: str | None = None,
        group: str | None = None,
        hosts: Sequence[str] | None = None,
        target_params: Mapping[str, Mapping[str, Any]] | None = None,
        per_target_timeout_s: float | None = None,
        fail_fast: bool | None = None,
        **common: Unpack[Common],
    ) -> None:
        if (group is None) == (hosts is None):
            raise DefinitionError(f"task {name!r}: give group= or hosts= (one of them)")
        targets: dict[str, Any] = (
            {"group": group} if group is not None else {"hosts": list(hosts or ())}
        )
        tp = {h: params_dict(p) for h, p in target_params.items()} if target_params else None
        fields = {
            "command": command,
            "script": script,
            "targets": targets,
            "target_params": tp,
            "per_target_timeout_s": per_target_timeout_s,
            "fail_fast": fail_fast,
        }
        super().__init__(name, fields, **common)
