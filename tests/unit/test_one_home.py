"""One home per concept in package code: quoted state names only in core/states.py (SQL text
included: states are bound), NOTIFY/LISTEN and channel names only in db/notify.py, error
classes only in core/errors.py."""

from __future__ import annotations

import ast
import builtins
import re
from fnmatch import fnmatch
from pathlib import Path

from core.states import TaskState, WorkflowState
from db.notify import CHANNEL_COMMAND, CHANNEL_TASK

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "coord", "db", "ops", "master", "worker", "api", "dagkeeper")
STATES_HOME, NOTIFY_HOME, ERRORS_HOME = "core/states.py", "db/notify.py", "core/errors.py"
# the user SDK imports no server package, so its API errors have a home of their own
SDK_ERRORS_HOME = "dagkeeper/errors.py"
# Files whose owners have not converted them yet; printed by the tests, to be emptied. Each rule
# checks everything else. Every package is converted: the lists are empty.
PENDING: dict[str, tuple[str, ...]] = {
    "states": (),
    "notify": (),
    "errors": (),
}

STATE_NAMES = sorted({s.value for s in TaskState} | {s.value for s in WorkflowState})
QUOTED_STATE = re.compile(r"""(['"])(""" + "|".join(STATE_NAMES) + r")\1")
CHANNELS = "|".join((CHANNEL_COMMAND, CHANNEL_TASK))
NOTIFY_TEXT = re.compile(r"(?i:pg_notify)|\bNOTIFY\b|\bLISTEN\b|\b(?:" + CHANNELS + r")\b")


def package_files() -> dict[str, str]:
    return {
        f.relative_to(ROOT).as_posix(): f.read_text()
        for p in PACKAGES
        for f in sorted((ROOT / p).rglob("*.py"))
    }


def pending(rule: str, path: str) -> bool:
    return any(fnmatch(path, pattern) for pattern in PENDING[rule])


def text_hits(pattern: re.Pattern[str], files: dict[str, str]) -> list[str]:
    return [
        f"{path}:{n}: {line.strip()}"
        for path, source in files.items()
        for n, line in enumerate(source.splitlines(), 1)
        if pattern.search(line)
    ]


def error_classes(files: dict[str, str]) -> dict[str, str]:
    """Every class that is an exception (derives from a builtin exception, from a class named
    *Error/*Exception, or from such a class defined in package code) -> path:line."""
    known = {n for n in dir(builtins) if isinstance(getattr(builtins, n), type)}
    known = {n for n in known if issubclass(getattr(builtins, n), BaseException)}
    classes: list[tuple[str, str, list[str]]] = []
    for path, source in files.items():
        for node in ast.walk(ast.parse(source, path)):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases]
                classes.append((node.name, f"{path}:{node.lineno}", bases))
    found: dict[str, str] = {}
    changed = True
    while changed:  # a class deriving from a package error class is one too
        changed = False
        for name, where, bases in classes:
            is_error = any(
                b in known or b in found or b.endswith(("Error", "Exception")) for b in bases
            )
            if is_error and name not in found:
                found[name], changed = where, True
    return found


def test_the_rules_see_what_they_should() -> None:
    sample = {
        "db/x.py": "q = \"UPDATE t SET state = 'RUNNING'\"\nok = 'RUNNING_LATE'\n",
        "db/y.py": "s.execute(text(\"SELECT pg_notify('dagkeeper_task', '1')\"))\n",
        "core/z.py": "class Boom(ValueError): pass\nclass Bang(Boom): pass\nclass Row: pass\n",
    }
    assert text_hits(QUOTED_STATE, sample) == ["db/x.py:1: q = \"UPDATE t SET state = 'RUNNING'\""]
    assert [h.split(":")[0] for h in text_hits(NOTIFY_TEXT, sample)] == ["db/y.py"]
    assert error_classes(sample) == {"Boom": "core/z.py:1", "Bang": "core/z.py:2"}


def test_quoted_state_names_only_in_states_module() -> None:
    print(f"not yet converted (states): {PENDING['states']}")
    files = {
        p: s for p, s in package_files().items() if p != STATES_HOME and not pending("states", p)
    }
    hits = text_hits(QUOTED_STATE, files)
    assert not hits, "quoted state names (bind core.states members instead):\n" + "\n".join(hits)


def test_notify_listen_and_channels_only_in_notify_module() -> None:
    print(f"not yet converted (notify): {PENDING['notify']}")
    files = {
        p: s for p, s in package_files().items() if p != NOTIFY_HOME and not pending("notify", p)
    }
    hits = text_hits(NOTIFY_TEXT, files)
    assert not hits, "NOTIFY/LISTEN text or channel names (use db.notify):\n" + "\n".join(hits)


def test_error_classes_only_in_errors_module() -> None:
    print(f"not yet converted (errors): {PENDING['errors']}")
    found = error_classes(package_files())
    outside = sorted(
        f"{where} {name}"
        for name, where in found.items()
        if not where.startswith((f"{ERRORS_HOME}:", f"{SDK_ERRORS_HOME}:"))
        and not pending("errors", where.split(":")[0])
    )
    assert not outside, (
        "error classes outside core/errors.py (dagkeeper/errors.py for the SDK):\n"
        + "\n".join(outside)
    )
