"""The SDK's task base: the fields every task has, dependencies with ``>>``/``<<`` (also on lists
and missions), the task's place in the ``with Workflow(...)`` block it was made in, and its spec
dict (the REST body of one task)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypedDict

from dagkeeper.errors import DefinitionError

if TYPE_CHECKING:
    from dagkeeper.workflow import Workflow

# the workflows whose ``with`` block is open, innermost last
_OPEN: list[Workflow] = []


def current_workflow() -> Workflow | None:
    return _OPEN[-1] if _OPEN else None


class Common(TypedDict, total=False):
    """Keyword arguments every task type takes (the README's table "Task fields")."""

    description: str
    depends_on: Sequence[BaseTask | str]
    params: Mapping[str, Any]
    retries: int
    retry_interval_s: float
    retry_backoff: bool
    retry_max_delay_s: float
    timeout_s: float
    timeout_strategy: str
    priority: str
    worker_group: str
    task_group: str
    trigger_rule: str
    workflow: Workflow


COMMON_FIELDS = tuple(k for k in Common.__annotations__ if k not in ("depends_on", "workflow"))
UPPER_FIELDS = ("priority", "timeout_strategy")


def param_value(v: Any) -> str:
    """Parameters are strings on the server: booleans become true/false, numbers their text."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def params_dict(params: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k): param_value(v) for k, v in (params or {}).items()}


class Node:
    """Something that can stand on either side of ``>>``: a task, or a mission of tasks."""

    def heads(self) -> list[BaseTask]:
        raise NotImplementedError

    def tails(self) -> list[BaseTask]:
        raise NotImplementedError

    def __rshift__(self, other: Node | Sequence[Node]) -> Any:
        """``a >> b``: b runs after a; returns b (so chains read left to right)."""
        for right in _nodes(other):
            for head in right.heads():
                head.set_upstream(*self.tails())
        return other

    def __lshift__(self, other: Node | Sequence[Node]) -> Any:
        """``a << b``: a runs after b; returns b."""
        for left in _nodes(other):
            left >> self
        return other

    def __rrshift__(self, other: Sequence[Node]) -> Node:
        """``[a, b] >> c``."""
        for left in _nodes(other):
            left >> self
        return self

    def __rlshift__(self, other: Sequence[Node]) -> Node:
        """``[a, b] << c``: a and b run after c."""
        self >> list(_nodes(other))
        return self


def _nodes(x: Node | Iterable[Node]) -> list[Node]:
    if isinstance(x, Node):
        return [x]
    if isinstance(x, str | bytes) or not isinstance(x, Iterable):
        raise DefinitionError(f">> and << join tasks, missions or lists of them, not {x!r}")
    out = list(x)
    bad = [n for n in out if not isinstance(n, Node)]
    if bad:
        raise DefinitionError(f">> and << join tasks, missions or lists of them, not {bad[0]!r}")
    return out


class BaseTask(Node):
    """One DAG node. Made inside ``with Workflow(...)`` it joins that workflow (or pass
    ``workflow=``). ``TYPE`` is the API's type name; ``fields`` its type-specific fields."""

    TYPE: ClassVar[str] = ""

    def __init__(self, name: str, fields: Mapping[str, Any] | None = None, **common: Any) -> None:
        if not isinstance(name, str) or not name:
            raise DefinitionError(f"a task needs a name (a non-empty string), not {name!r}")
        unknown = sorted(set(common) - set(Common.__annotations__))
        if unknown:
            raise DefinitionError(f"task {name!r}: unknown argument(s) {', '.join(unknown)}")
        self.name = name
        self.fields: dict[str, Any] = {k: v for k, v in (fields or {}).items() if v is not None}
        self.options: dict[str, Any] = {
            k: common[k] for k in COMMON_FIELDS if common.get(k) is not None
        }
        self.upstream: list[str] = []
        self.set_upstream(*(common.get("depends_on") or ()))
        workflow = common.get("workflow") or current_workflow()
        if workflow is None:
            raise DefinitionError(
                f"task {name!r} is made outside a workflow: write it inside `with Workflow(...)`"
                " or pass workflow="
            )
        self.workflow: Workflow = workflow
        workflow.add(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def heads(self) -> list[BaseTask]:
        return [self]

    def tails(self) -> list[BaseTask]:
        return [self]

    def set_upstream(self, *tasks: BaseTask | str) -> BaseTask:
        """This task runs after ``tasks`` (tasks or task names)."""
        for t in tasks:
            name = t.name if isinstance(t, BaseTask) else t
            if not isinstance(name, str):
                raise DefinitionError(f"task {self.name!r}: depends_on takes tasks or names")
            if name not in self.upstream:
                self.upstream.append(name)
        return self

    def set_downstream(self, *tasks: BaseTask) -> BaseTask:
        for t in tasks:
            t.set_upstream(self)
        return self

    def type_fields(self, resolve: Any = None) -> dict[str, Any]:
        """The type-specific fields as the API takes them (``resolve`` maps workflow
        references to ids, for SUB_PROCESS)."""
        return dict(self.fields)

    def to_dict(self, resolve: Any = None) -> dict[str, Any]:
        """The task as one entry of the workflow spec's ``tasks``."""
        out: dict[str, Any] = {"name": self.name, "type": self.TYPE}
        for k, v in self.options.items():
            if k == "params":
                v = params_dict(v)
            elif k in UPPER_FIELDS and isinstance(v, str):
                v = v.upper()
            out[k] = v
        if self.upstream:
            out["depends_on"] = list(self.upstream)
        out.update(self.type_fields(resolve))
        return out
