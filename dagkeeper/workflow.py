"""``Workflow``: a DAG written in Python (``with Workflow("etl") as wf:`` then tasks and ``>>``),
its spec, ``submit()`` (create, a new version when the content changed, a no-op when not; child
workflows first) and ``run()``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dagkeeper import spec as specs
from dagkeeper.errors import Conflict, DefinitionError
from dagkeeper.tasks import _OPEN, BaseTask, params_dict

if TYPE_CHECKING:
    from dagkeeper.client import Client
    from dagkeeper.runs import Run

# every Workflow made in this process, in order (``dagkeeper apply file.py`` reads it)
DEFINED: list[Workflow] = []


@dataclass(frozen=True)
class Submitted:
    id: int
    name: str
    version: int
    action: str  # created, new_version or unchanged

    def __str__(self) -> str:
        what = {"created": "created", "new_version": "new version", "unchanged": "unchanged"}
        return f"workflow {self.name!r}: {what[self.action]} (id {self.id}, version {self.version})"


class Workflow:
    """A workflow definition. Workflow-level options are the README's "Workflow fields";
    ``client`` is used by ``submit()``/``run()`` (default: ``Client()`` from the environment)."""

    def __init__(
        self,
        name: str,
        *,
        description: str | None = None,
        params: dict[str, Any] | None = None,
        priority: str | None = None,
        timezone: str | None = None,
        execution_type: str | None = None,
        timeout_s: float | None = None,
        timeout_strategy: str | None = None,
        alert_group: str | None = None,
        warning_type: str | None = None,
        client: Client | None = None,
        parent: Workflow | None = None,
    ) -> None:
        self.name = name
        self.options: dict[str, Any] = {
            k: v
            for k, v in (
                ("description", description),
                ("priority", priority.upper() if priority else None),
                ("timezone", timezone),
                ("params", params_dict(params) if params else None),
                ("execution_type", execution_type.upper() if execution_type else None),
                ("timeout_s", timeout_s),
                ("timeout_strategy", timeout_strategy.upper() if timeout_strategy else None),
                ("alert_group", alert_group),
                ("warning_type", warning_type.upper() if warning_type else None),
            )
            if v is not None
        }
        self.tasks: list[BaseTask] = []
        self.client = client
        self.parent = parent  # a mission's own workflow: submitted by its parent
        self.id: int | None = None
        DEFINED.append(self)

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, {len(self.tasks)} tasks)"

    def __enter__(self) -> Workflow:
        _OPEN.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _OPEN.remove(self)

    def add(self, task: BaseTask) -> None:
        self.tasks.append(task)

    def remove(self, task: BaseTask) -> None:
        self.tasks.remove(task)

    def __getitem__(self, name: str) -> BaseTask:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(f"workflow {self.name!r} has no task {name!r}")

    # -- the spec -----------------------------------------------------------------------------

    def children(self) -> list[Workflow]:
        """The SDK workflows its SUB_PROCESS tasks run (they are submitted before it)."""
        return [c for t in self.tasks if isinstance(c := getattr(t, "child", None), Workflow)]

    def to_spec(self, resolve: Any = None) -> dict[str, Any]:
        """The REST body of ``POST /workflows``. A sub-workflow given as an SDK Workflow or a
        name needs ``resolve`` (``submit()`` passes one)."""
        if not self.tasks:
            raise DefinitionError(f"workflow {self.name!r} has no tasks")
        return {
            "name": self.name,
            **self.options,
            "tasks": [t.to_dict(resolve) for t in self.tasks],
        }

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_spec(), indent=kw.pop("indent", 2), **kw)

    def to_yaml(self) -> str:
        import yaml

        return str(yaml.safe_dump(self.to_spec(), sort_keys=False))

    # -- server -------------------------------------------------------------------------------

    def _client(self, client: Client | None) -> Client:
        if client is not None:
            return client
        if self.client is None:
            from dagkeeper.client import Client

            self.client = Client()
        return self.client

    def submit(self, client: Client | None = None) -> Submitted:
        """Create the workflow, or store a new version when its content changed; nothing when
        it is unchanged. Child workflows (missions, SubWorkflow of a Workflow) go first."""
        c = self._client(client)
        for child in self.children():
            child.submit(c)

        def resolve(ref: Any, task: str) -> int:
            if isinstance(ref, Workflow):
                if ref.id is None:
                    ref.submit(c)
                return int(ref.id)  # type: ignore[arg-type]
            return c.workflow_id(ref)

        body = self.to_spec(resolve)
        result = apply_spec(c, body)
        self.id = result.id
        return result

    def run(
        self,
        params: dict[str, Any] | None = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
        client: Client | None = None,
        **options: Any,
    ) -> Run:
        """Submit (a no-op when unchanged), then start a run; ``wait=True`` returns the ended
        run with its tasks. Options: priority, worker_group, failure_strategy, start_nodes,
        depend_mode, dry_run."""
        c = self._client(client)
        self.submit(c)
        return c.run(int(self.id or 0), params_dict(params), wait=wait, timeout=timeout, **options)


def apply_spec(client: Client, body: dict[str, Any]) -> Submitted:
    """Upsert one spec by name: POST if new, PUT if its content differs, nothing otherwise."""
    name = str(body.get("name"))
    for _ in range(2):  # a concurrent create of the same name: look again once
        found = client.find_workflow(name)
        if found is None:
            try:
                made = client.create_workflow(body)
            except Conflict:
                continue
            return Submitted(int(made["id"]), name, int(made["version"]), "created")
        current = client.workflow(int(found["id"]))
        if specs.same_definition(specs.body_of(current), body):
            return Submitted(int(current["id"]), name, int(current["version"]), "unchanged")
        made = client.update_workflow(int(found["id"]), body)
        return Submitted(int(made["id"]), name, int(made["version"]), "new_version")
    raise Conflict(f"workflow {name!r} was created and deleted while it was submitted")
