"""The one lost-attempt decision, pure: whether an in-flight attempt has lost its worker, shared by
the masters' worker failover and the doctor. A lost attempt becomes NEED_FAULT_TOLERANCE (by a
write fenced on its state and lease token) and its master starts it again without using a retry."""

from __future__ import annotations

from core.states import TaskState

S = TaskState


def lost_reason(
    state: str,
    leased: bool,
    queued: bool,
    sub_execution: bool = False,
    dispatched_s_ago: float | None = None,
    dispatch_deadline_s: float = 0.0,
) -> str | None:
    """Why an attempt is lost, or None while something still holds it. ``leased``: a worker's
    lease znode exists; ``queued``: its queue entry exists. A DISPATCHED attempt is given
    ``dispatch_deadline_s`` from its dispatch (a claim may be in flight); a FANOUT sub-execution
    waits on its host's queue, where its driver times it out, so it is never lost here."""
    if leased:
        return None
    if state == S.RUNNING:
        return "RUNNING without a lease: its worker is gone"
    if state != S.DISPATCHED or sub_execution or queued:
        return None
    if dispatched_s_ago is not None and dispatched_s_ago < dispatch_deadline_s:
        return None
    return "DISPATCHED with neither a queue entry nor a lease"
