"""KunlunBase's task model, first-class: a ``Channel`` is one call on one target (a timeout, no
retry); a ``Task`` is parallel channels that must all succeed (one FANOUT node with per-target
parameters); a ``Mission`` is serial tasks forming one function (a chain in the workflow, or a
sub-workflow of its own). Missions of one workflow run concurrently."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Unpack

from dagkeeper.errors import DefinitionError
from dagkeeper.task_types import FanOut, SubWorkflow
from dagkeeper.tasks import _OPEN, BaseTask, Common, Node, current_workflow, params_dict
from dagkeeper.workflow import Workflow


class Channel:
    """One call of a Task's command on ``target`` (a worker host) with its own parameters:
    ``Channel("db1", port=5401)`` or ``Channel("db1", {"port": 5401})``."""

    def __init__(self, target: str, params: Mapping[str, Any] | None = None, **more: Any) -> None:
        if not isinstance(target, str) or not target.strip():
            raise DefinitionError(f"a channel needs a target host name, not {target!r}")
        self.target = target
        self.params = params_dict({**(params or {}), **more})

    def __repr__(self) -> str:
        return f"Channel({self.target!r}, {self.params!r})"


class Task(FanOut):
    """Parallel channels, all of which must succeed: ``command`` runs once per channel, on the
    channel's host, with the channel's parameters over the task's. ``timeout_s`` bounds each
    channel; a channel is never retried (``retries`` retry the whole task, as the seed's upper
    layer does). ``fail_fast=True`` stops the other channels at the first failure."""

    def __init__(
        self,
        name: str,
        command: str,
        channels: Sequence[Channel],
        *,
        fail_fast: bool | None = None,
        **common: Unpack[Common],
    ) -> None:
        channels = list(channels)
        if not channels or not all(isinstance(c, Channel) for c in channels):
            raise DefinitionError(f"task {name!r}: channels must be a non-empty list of Channel")
        timeout = common.pop("timeout_s", None)
        self.channels = channels
        super().__init__(
            name,
            command,
            hosts=[c.target for c in channels],
            target_params={c.target: c.params for c in channels if c.params},
            per_target_timeout_s=timeout,
            fail_fast=fail_fast,
            **common,
        )


class Mission(Node):
    """Serial tasks: ``Mission("expand", [export, load, replay, switch])`` chains tasks made in
    the workflow; ``with Mission("expand"):`` chains the tasks made inside the block, in order.
    ``subworkflow=True`` makes the mission a workflow of its own (``<workflow>.<mission>``) run
    by one SUB_PROCESS node, which ``submit()`` of the parent submits first."""

    def __init__(
        self,
        name: str,
        tasks: Sequence[BaseTask] | None = None,
        *,
        subworkflow: bool = False,
        **common: Unpack[Common],
    ) -> None:
        parent = common.pop("workflow", None) or current_workflow()
        if parent is None:
            raise DefinitionError(f"mission {name!r} is made outside a workflow")
        self.name, self.parent, self.common = name, parent, common
        self.tasks: list[BaseTask] = []
        self.node: SubWorkflow | None = None
        self.child: Workflow | None = None
        self._mark = 0
        if subworkflow:
            self.child = Workflow(f"{parent.name}.{name}", parent=parent)
        if tasks is not None:
            self._take(list(tasks))
            self._close()

    def _take(self, tasks: list[BaseTask]) -> None:
        for t in tasks:
            if not isinstance(t, BaseTask):
                raise DefinitionError(f"mission {self.name!r}: {t!r} is not a task")
            if self.child is not None and t.workflow is not self.child:
                t.workflow.remove(t)
                t.workflow = self.child
                self.child.add(t)
        self.tasks.extend(tasks)

    def _close(self) -> None:
        if not self.tasks:
            raise DefinitionError(f"mission {self.name!r} has no tasks")
        for before, after in zip(self.tasks, self.tasks[1:], strict=False):
            before >> after
        if self.child is not None:
            options: dict[str, Any] = {**self.common, "workflow": self.parent}
            self.node = SubWorkflow(self.name, self.child, **options)
            return
        for t in self.tasks:  # the mission's options are its tasks' defaults
            for k, v in self.common.items():
                if k == "depends_on":
                    continue
                t.options.setdefault(k, v)
        if self.common.get("depends_on"):
            self.tasks[0].set_upstream(*self.common["depends_on"])

    def __enter__(self) -> Mission:
        target = self.child or self.parent
        self._mark = len(target.tasks)
        if self.child is not None:
            _OPEN.append(self.child)
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if self.child is not None:
            _OPEN.remove(self.child)
        if exc_type is None:
            self._take(list((self.child or self.parent).tasks[self._mark :]))
            self._close()

    def _ends(self) -> list[BaseTask]:
        if self.node is None and not self.tasks:
            raise DefinitionError(
                f"mission {self.name!r} has no tasks yet: join it with >> after its block"
            )
        return [self.node] if self.node is not None else [self.tasks[0], self.tasks[-1]]

    def heads(self) -> list[BaseTask]:
        return self._ends()[:1]

    def tails(self) -> list[BaseTask]:
        return self._ends()[-1:]

    def __repr__(self) -> str:
        return f"Mission({self.name!r}, {[t.name for t in self.tasks]})"
