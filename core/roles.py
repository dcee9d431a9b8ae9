"""Roles and what they may do: admin > editor > operator > viewer, the action each request needs,
and the one pure decision (allowed, or the 403/404 answer with its reason) the API applies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"  # every project, users, tokens, projects, grants, audit
    EDITOR = "editor"  # define (workflows, schedules, datasources, task groups) and run
    OPERATOR = "operator"  # run, stop, pause, resume, rerun, recover, kill, force-success
    VIEWER = "viewer"  # read only


class Action(StrEnum):
    READ = "read"
    RUN = "run"
    DEFINE = "define"
    ADMIN = "admin"


RANK: dict[Role, int] = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.EDITOR: 3, Role.ADMIN: 4}
# the least role an action needs
NEEDS: dict[Action, Role] = {
    Action.READ: Role.VIEWER,
    Action.RUN: Role.OPERATOR,
    Action.DEFINE: Role.EDITOR,
    Action.ADMIN: Role.ADMIN,
}
# roles a project grant may carry (admin is global, never per project)
GRANT_ROLES = (Role.EDITOR, Role.OPERATOR, Role.VIEWER)


def role_allows(role: Role, action: Action) -> bool:
    return RANK[role] >= RANK[NEEDS[action]]


@dataclass(frozen=True)
class Verdict:
    """``status`` 0 = allowed; 403 (``reason`` names the missing grant) or 404 (the project is
    not the caller's, so the resource is not shown to exist)."""

    status: int
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 0


ALLOWED = Verdict(0)


def decide(role: Role, grants: Mapping[str, Role], project: str | None, action: Action) -> Verdict:
    """May a caller with global ``role`` and per-project ``grants`` do ``action`` on something
    of ``project`` (None: nothing of a project, e.g. the users or the cluster)?"""
    if role is Role.ADMIN:
        return ALLOWED
    need = NEEDS[action]
    if project is None:
        if action in (Action.READ,):
            return ALLOWED
        return Verdict(403, f"needs the {need.value} role (you are {role.value})")
    have = grants.get(project)
    if have is None:
        return Verdict(404, f"project {project!r} is not one of yours")
    if RANK[have] >= RANK[need]:
        return ALLOWED
    return Verdict(
        403, f"needs the {need.value} role on project {project!r} (you have {have.value})"
    )
