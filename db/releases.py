"""A workflow's release state: the check every new run passes (an OFFLINE workflow is refused
with the reason) and the switch between ONLINE and OFFLINE (going ONLINE re-times the
workflow's enabled schedules from now, so the offline time is not caught up). Never commits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import Conflict, ValidationError
from core.states import ReleaseState
from db.models import Schedule, WorkflowDefinition

OFFLINE_DETAIL = "release_state"


def check_online(d: WorkflowDefinition, what: str = "run") -> None:
    """Conflict (409) naming the workflow and the way out when it is OFFLINE."""
    if d.release_state == ReleaseState.OFFLINE:
        raise Conflict(
            f"workflow {d.name!r} is OFFLINE: it cannot {what}; set it ONLINE first"
            f" (PUT /workflows/{d.id}/release-state, or `dagkeeper online {d.name}`)",
            {"workflow_id": d.id, OFFLINE_DETAIL: ReleaseState.OFFLINE.value},
        )


def is_offline_refusal(exc: Conflict) -> bool:
    details: Any = exc.details
    return isinstance(details, dict) and details.get(OFFLINE_DETAIL) == ReleaseState.OFFLINE


def parse_state(value: Any) -> ReleaseState:
    try:
        return ReleaseState(str(value).upper())
    except ValueError:
        raise ValidationError(
            f"release_state: must be ONLINE or OFFLINE, not {value!r}",
            [{"loc": ["body", "release_state"], "message": "must be ONLINE or OFFLINE"}],
        ) from None


def set_state(
    s: Session, d: WorkflowDefinition, state: ReleaseState, now: datetime | None = None
) -> bool:
    """Set the (locked) definition's release state; True if it changed. Going ONLINE, the
    workflow's enabled schedules get their next fire time from now."""
    if d.release_state == state:
        return False
    d.release_state = state.value
    d.updated_at = func.now()
    if state == ReleaseState.ONLINE:
        from db.schedules import compute_next

        moment = now or datetime.now(UTC)
        rows = s.scalars(select(Schedule).where(Schedule.workflow_id == d.id, Schedule.enabled))
        for row in rows:
            row.next_fire_time = compute_next(row, moment)
    s.flush()
    return True
