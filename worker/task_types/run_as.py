"""Tenancy of SHELL tasks: which OS user an attempt runs as (its ``run_as``, else its project's
default; the project must grant it and this worker must allow it), and the argv prefix that
switches to that user (``setpriv``, else ``runuser``). A refusal is a sentence for the task's
log; the task then fails without running."""

from __future__ import annotations

import functools
import os
import pwd
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from db.projects import RunAs


@dataclass(frozen=True)
class UserChoice:
    """``user`` None = the worker's own user; ``refusal`` set = the attempt must not run."""

    user: str | None = None
    refusal: str | None = None


def choose_user(
    run_as: RunAs | None, requested: Any, allowed_here: Sequence[str], worker_user: str
) -> UserChoice:
    """The pure decision: the task's ``run_as`` (or its project's default) must be granted to the
    project and listed in this worker's ``worker.run_as_users``."""
    project = run_as.project if run_as is not None else "?"
    if requested is not None and not isinstance(requested, str):
        return UserChoice(refusal="run_as: must be an OS user name")
    wanted = requested or (run_as.default if run_as is not None else None)
    if wanted is None:
        return UserChoice()
    granted = run_as.allowed if run_as is not None else ()
    if wanted not in granted:
        return UserChoice(
            refusal=f"run_as: OS user {wanted!r} is not granted to project {project!r} "
            f"(granted: {', '.join(granted) or 'none'})"
        )
    if wanted == worker_user:
        return UserChoice()
    if wanted not in allowed_here:
        return UserChoice(
            refusal=f"project {project!r} runs SHELL tasks as OS user {wanted!r}, which this "
            f"worker does not allow (worker.run_as_users: {', '.join(allowed_here) or 'none'})"
        )
    return UserChoice(user=wanted)


def current_user() -> str:
    return _user_name(os.geteuid())


@functools.lru_cache(maxsize=8)
def _user_name(uid: int) -> str:
    """The name of ``uid`` (read once: every SHELL task asks, and a passwd lookup reads a file)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def switch_argv(
    user: str, argv: list[str], env: dict[str, str], workdir: Path, files: Sequence[Path]
) -> list[str]:
    """``argv`` run as ``user``: the working directory and ``files`` become the user's, HOME,
    USER and LOGNAME the user's; ValueError (a refusal) when it cannot be done here."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise ValueError(f"run_as: no OS user named {user!r} on this worker") from None
    if os.geteuid() != 0:
        raise ValueError(
            f"run_as: the worker runs as {current_user()!r} and cannot switch to {user!r} "
            "(it needs root for setpriv/runuser)"
        )
    for path in (workdir, *files):
        os.chown(path, pw.pw_uid, pw.pw_gid)
    env.update(HOME=pw.pw_dir, USER=user, LOGNAME=user)
    if shutil.which("setpriv"):
        prefix = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups"]
        return [*prefix, "--", *argv]
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *argv]
    raise ValueError("run_as: neither setpriv nor runuser is installed on this worker")


def resolve(
    spec: Mapping[str, Any], env: Mapping[str, str], allowed_here: Sequence[str], lookup: Any
) -> UserChoice:
    """The choice for an attempt; ``lookup(workflow_id)`` reads its project's OS users."""
    wid = env.get("DAGKEEPER_WORKFLOW_ID", "")
    run_as = lookup(int(wid)) if wid.isdigit() else None
    return choose_user(run_as, spec.get("run_as"), allowed_here, current_user())
