"""Branching nodes evaluated by the master: CONDITIONS (route on upstream success/failure) and
SWITCH (route on a parameter expression). Spec checks, a safe expression evaluator (no eval: a
whitelisted subset of Python expressions over parameters), and the pure routing decisions."""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import ExpressionError
from core.task_fields import FieldProblem

CONDITIONS = "CONDITIONS"
SWITCH = "SWITCH"
BRANCH_TYPES = frozenset({CONDITIONS, SWITCH})

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "int": int,
    "float": float,
    "str": str,
    "len": len,
    "lower": lambda s: str(s).lower(),
    "upper": lambda s: str(s).upper(),
}
_CONSTANTS = {"true": True, "false": False, "True": True, "False": False}


def _compile(expr: str) -> tuple[ast.Expression, list[str]]:
    """Replace each ``${name}`` by a variable ``_p<i>``, parse, and check only allowed nodes."""
    names: list[str] = []

    def ref(m: re.Match[str]) -> str:
        names.append(m.group(1))
        return f"_p{len(names) - 1}"

    source = _REF.sub(ref, expr)
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"cannot parse {expr!r}: {exc.msg}") from None
    for node in ast.walk(tree):
        ok = isinstance(
            node,
            ast.Expression
            | ast.BoolOp
            | ast.And
            | ast.Or
            | ast.UnaryOp
            | ast.Not
            | ast.USub
            | ast.Compare
            | ast.Constant
            | ast.Name
            | ast.Load
            | ast.List
            | ast.Tuple
            | ast.Call
            | ast.cmpop,
        )
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS and not node.keywords
        ):
            ok = False
        if isinstance(node, ast.Name) and not (
            node.id in _CONSTANTS or node.id in _FUNCTIONS or re.fullmatch(r"_p\d+", node.id)
        ):
            raise ExpressionError(
                f"{expr!r}: unknown name {node.id!r} (refer to parameters as ${{name}})"
            )
        if not ok:
            raise ExpressionError(f"{expr!r}: {type(node).__name__} is not allowed")
    return tree, names


def evaluate(expr: str, params: Mapping[str, str]) -> bool:
    """Evaluate a SWITCH condition such as ``${region} == "eu" and int(${n}) > 3``."""
    tree, names = _compile(expr)
    values: dict[str, Any] = {}
    for i, name in enumerate(names):
        if name not in params:
            raise ExpressionError(f"{expr!r}: parameter {name!r} is not set")
        values[f"_p{i}"] = params[name]

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.BoolOp):
            vals = (ev(v) for v in node.values)
            return all(vals) if isinstance(node.op, ast.And) else any(vals)
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            return (not v) if isinstance(node.op, ast.Not) else -v
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = ev(comp)
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return values[node.id] if node.id in values else _CONSTANTS[node.id]
        if isinstance(node, ast.List | ast.Tuple):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            return _FUNCTIONS[node.func.id](*(ev(a) for a in node.args))
        raise ExpressionError(f"{expr!r}: {type(node).__name__} is not allowed")

    try:
        return bool(ev(tree))
    except ExpressionError:
        raise
    except (TypeError, ValueError) as exc:
        raise ExpressionError(f"{expr!r}: {exc}") from None


# --- routing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """The outcome of a branching node: the tasks it chose and why."""

    chosen: list[str]
    reason: str


def route_conditions(task: Mapping[str, Any], upstream_ok: bool) -> Route:
    """CONDITIONS: ``on_success`` when every upstream succeeded, else ``on_failure``."""
    if upstream_ok:
        return Route(list(task.get("on_success") or []), "upstream succeeded")
    return Route(list(task.get("on_failure") or []), "upstream did not succeed")


def route_switch(task: Mapping[str, Any], params: Mapping[str, str]) -> Route:
    """SWITCH: the ``next`` of the first case whose ``when`` holds, else ``default``."""
    for i, case in enumerate(task.get("cases") or []):
        if evaluate(str(case["when"]), params):
            return Route([str(case["next"])], f"case {i + 1} ({case['when']}) holds")
    default = task.get("default")
    return Route([str(default)] if default else [], "no case holds: default")


# --- spec checks --------------------------------------------------------------------------------


def _names(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def validate_conditions(t: Mapping[str, Any]) -> list[FieldProblem]:
    out = []
    for key in ("on_success", "on_failure"):
        if t.get(key) is not None and _names(t.get(key)) is None:
            out.append((key, "must be a list of task names"))
    if not t.get("on_success") and not t.get("on_failure"):
        out.append(("on_success", "name at least one branch"))
    return out


def validate_switch(t: Mapping[str, Any]) -> list[FieldProblem]:
    out = []
    cases = t.get("cases")
    if not isinstance(cases, list) or not cases:
        return [("cases", 'must be a non-empty list of {"when", "next"}')]
    for i, case in enumerate(cases):
        if not isinstance(case, dict) or not isinstance(case.get("next"), str):
            out.append((f"cases.{i}", 'needs "when" and "next"'))
            continue
        try:
            _compile(str(case.get("when", "")))
        except ExpressionError as exc:
            out.append((f"cases.{i}.when", str(exc)))
    if t.get("default") is not None and not isinstance(t.get("default"), str):
        out.append(("default", "must be a task name"))
    return out


def branch_targets(t: Mapping[str, Any]) -> list[str]:
    """Every task name a branching node may choose."""
    if t.get("type") == CONDITIONS:
        return [*(_names(t.get("on_success")) or []), *(_names(t.get("on_failure")) or [])]
    out = [str(c.get("next")) for c in t.get("cases") or [] if isinstance(c, dict)]
    if isinstance(t.get("default"), str):
        out.append(t["default"])
    return out


def check_branches(
    tasks: Iterable[Mapping[str, Any]], downstream: Mapping[str, Iterable[str]]
) -> list[dict[str, Any]]:
    """Each branch target of a CONDITIONS/SWITCH node must be one of its direct downstream tasks."""
    problems: list[dict[str, Any]] = []
    for t in tasks:
        if t.get("type") not in BRANCH_TYPES:
            continue
        below = set(downstream.get(str(t["name"]), ()))
        bad = sorted({n for n in branch_targets(t) if n not in below})
        if bad:
            problems.append(
                {
                    "code": "branch_target",
                    "message": f"task '{t['name']}': branch target(s) {', '.join(bad)} must"
                    f" depend on '{t['name']}' (list it in their depends_on)",
                    "tasks": [str(t["name"]), *bad],
                }
            )
    return problems
