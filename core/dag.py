"""Pure DAG logic: validation with messages that name the offending tasks, topological order,
and the set of tasks that are ready to run given the states of the others."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from heapq import heapify, heappop, heappush


@dataclass(frozen=True)
class DagProblem:
    """One validation problem; ``tasks`` names the tasks involved."""

    code: str
    message: str
    tasks: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "tasks": list(self.tasks)}


@dataclass(frozen=True)
class Dag:
    """Task names and their upstream dependencies, after validation."""

    deps: Mapping[str, tuple[str, ...]]
    downstream: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, deps: Mapping[str, Sequence[str]]) -> Dag:
        down: dict[str, list[str]] = {name: [] for name in deps}
        for name, ups in deps.items():
            for up in ups:
                down[up].append(name)
        return cls(
            deps={k: tuple(v) for k, v in deps.items()},
            downstream={k: tuple(v) for k, v in down.items()},
        )

    @property
    def names(self) -> list[str]:
        return list(self.deps)


def validate(edges: Sequence[tuple[str, Sequence[str]]]) -> list[DagProblem]:
    """Check a list of ``(task name, depends_on)`` pairs; an empty result means a valid DAG."""
    problems: list[DagProblem] = []
    if not edges:
        return [DagProblem("empty", "a workflow needs at least one task")]
    seen: dict[str, int] = {}
    for name, _ in edges:
        seen[name] = seen.get(name, 0) + 1
    dupes = sorted(n for n, c in seen.items() if c > 1)
    if dupes:
        problems.append(
            DagProblem(
                "duplicate_name", f"duplicate task name(s): {', '.join(dupes)}", tuple(dupes)
            )
        )
    for name, ups in edges:
        if name in ups:
            problems.append(DagProblem("self_loop", f"task '{name}' depends on itself", (name,)))
        unknown = sorted({u for u in ups if u not in seen})
        if unknown:
            problems.append(
                DagProblem(
                    "unknown_dependency",
                    f"task '{name}' depends on unknown task(s): {', '.join(unknown)}",
                    (name, *unknown),
                )
            )
    if problems:
        return problems
    cycle = find_cycle({n: list(u) for n, u in edges})
    if cycle:
        path = " -> ".join([*cycle, cycle[0]])
        problems.append(DagProblem("cycle", f"dependency cycle: {path}", tuple(cycle)))
    return problems


def find_cycle(deps: Mapping[str, Sequence[str]]) -> list[str] | None:
    """Return the tasks of one cycle (in dependency order) or None; iterative, no recursion limit."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(deps, white)
    for start in deps:
        if color[start] != white:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = []
        color[start] = grey
        path.append(start)
        while stack:
            node, idx = stack[-1]
            ups = deps[node]
            if idx < len(ups):
                stack[-1] = (node, idx + 1)
                nxt = ups[idx]
                if color[nxt] == grey:
                    cyc = path[path.index(nxt) :]
                    return list(reversed(cyc))
                if color[nxt] == white:
                    color[nxt] = grey
                    path.append(nxt)
                    stack.append((nxt, 0))
            else:
                color[node] = black
                path.pop()
                stack.pop()
    return None


def topological_order(dag: Dag, priority: Mapping[str, int] | None = None) -> list[str]:
    """Kahn's algorithm; among ready tasks, lower priority number first, then name order."""
    pri = priority or {}
    indeg = {n: len(u) for n, u in dag.deps.items()}
    heap = [(pri.get(n, 2), n) for n, d in indeg.items() if d == 0]
    heapify(heap)
    out: list[str] = []
    while heap:
        _, n = heappop(heap)
        out.append(n)
        for d in dag.downstream[n]:
            indeg[d] -= 1
            if indeg[d] == 0:
                heappush(heap, (pri.get(d, 2), d))
    if len(out) != len(dag.deps):
        raise ValueError("graph has a cycle")
    return out


def ready_tasks(
    dag: Dag,
    succeeded: Iterable[str],
    started: Iterable[str],
    scope: Iterable[str] | None = None,
) -> list[str]:
    """Tasks (within ``scope``, default all) not yet started whose upstreams all succeeded.

    ``started`` holds every task that has (or had) an attempt; ``succeeded`` those whose latest
    attempt succeeded. Upstreams outside ``scope`` count as satisfied.
    """
    done = set(succeeded)
    begun = set(started)
    in_scope = set(scope) if scope is not None else set(dag.deps)
    return [
        n
        for n in dag.deps
        if n in in_scope
        and n not in begun
        and all(u in done or u not in in_scope for u in dag.deps[n])
    ]


def descendants(dag: Dag, names: Iterable[str]) -> set[str]:
    """Every task reachable downstream of ``names`` (excluding them unless reachable)."""
    out: set[str] = set()
    stack = list(names)
    while stack:
        for d in dag.downstream[stack.pop()]:
            if d not in out:
                out.add(d)
                stack.append(d)
    return out


def ancestors(dag: Dag, names: Iterable[str]) -> set[str]:
    """Every task upstream of ``names``."""
    out: set[str] = set()
    stack = list(names)
    while stack:
        for u in dag.deps[stack.pop()]:
            if u not in out:
                out.add(u)
                stack.append(u)
    return out
