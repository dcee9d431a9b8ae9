"""The command loop's one pass: lock pending commands and carry each out in one transaction —
start a run (after the serial-execution check), resume a paused instance, rerun or recover a
finished one — taking ownership by compare-and-set, then delete it (a command acts at most once).
A command that cannot be carried out leaves a trace the user sees (the instance's reason and an
alert row), never only a log line."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from core.states import CommandType, WorkflowState
from db import commands as q_commands
from db import control as q_control
from db import instances as q_instances
from db import serial as q_serial
from db.engine import SessionFactory

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

C = CommandType
W = WorkflowState

# Commands that start a new run of a workflow (an instance this master will own).
STARTING = {
    C.START_PROCESS.value,
    C.SCHEDULER.value,
    C.START_CURRENT_TASK_PROCESS.value,
    C.COMPLEMENT_DATA.value,
}
# Commands on an existing instance: (states it may be in, whether it is a new run, keep successes)
RESTARTING: dict[str, tuple[list[str], bool, bool]] = {
    C.RECOVER_SUSPENDED_PROCESS.value: ([W.PAUSE.value], False, False),
    C.REPEAT_RUNNING.value: ([W.SUCCESS.value, W.FAILURE.value, W.STOP.value], True, False),
    C.START_FAILURE_TASK_PROCESS.value: ([W.FAILURE.value, W.STOP.value], True, True),
}


def claim_commands(sf: SessionFactory, master_id: str, epoch: int, limit: int) -> list[int]:
    """Claim up to ``limit`` commands; return the ids of the instances we now own."""
    owned: list[int] = []
    actor = f"master {master_id}@{epoch}"
    with sf.begin() as s:
        cmds = q_commands.lock_pending(s, limit)
        for c in cmds:
            if c.type in RESTARTING and c.instance_id is not None:
                sources, new_run, keep = RESTARTING[c.type]
                if q_instances.restart(
                    s,
                    c.instance_id,
                    sources,
                    master_id,
                    epoch,
                    new_run=new_run,
                    keep_successes=keep,
                ):
                    owned.append(c.instance_id)
                    log.info("%s: command %d: %s instance %d", actor, c.id, c.type, c.instance_id)
                else:
                    state = q_control.state_of(s, c.instance_id)
                    why = (
                        f"the instance is {state or 'gone'}, not {' or '.join(sources)}"
                        if state != W.RUNNING
                        else "the instance is already running again"
                    )
                    _not_carried_out(s, actor, c, why)
            elif c.type not in STARTING:
                if c.instance_id is not None:
                    _not_carried_out(s, actor, c, f"command type {c.type} is not supported")
                else:
                    log.warning(
                        "%s: command %d of type %s is not supported; dropped", actor, c.id, c.type
                    )
            elif c.instance_id is not None:
                if c.workflow_id is not None and c.version is not None:
                    held = q_serial.admit(s, c.workflow_id, c.version, c.instance_id)
                    if held is not None:
                        log.info("%s: instance %d %s: %s", actor, c.instance_id, *held)
                        continue
                if q_instances.take_ownership(s, c.instance_id, master_id, epoch):
                    owned.append(c.instance_id)
                else:
                    state = q_control.state_of(s, c.instance_id)
                    if state is not None and state != W.STOP:  # a stopped one says so already
                        _not_carried_out(s, actor, c, f"the instance is {state}, not SUBMITTED")
            elif c.workflow_id is not None and c.version is not None:
                owned.append(
                    q_instances.create_owned(
                        s,
                        workflow_id=c.workflow_id,
                        version=c.version,
                        priority=c.priority,
                        params=c.params,
                        command_type=c.type,
                        owner=master_id,
                        epoch=epoch,
                        schedule_id=c.schedule_id,
                        schedule_time=c.schedule_time,
                    )
                )
        q_commands.delete(s, [c.id for c in cmds])
    if owned:
        log.info("%s: claimed %d command(s): instances %s", actor, len(owned), owned[:20])
    return owned


def _not_carried_out(s: Session, actor: str, c: q_commands.ClaimedCommand, why: str) -> None:
    assert c.instance_id is not None
    reason = q_control.note_not_carried_out(s, c.id, c.type, c.instance_id, why)
    log.warning("%s: instance %d: %s", actor, c.instance_id, reason)


def promote_stalled(sf: SessionFactory, master_id: str, epoch: int) -> list[int]:
    """Start the next waiting serial run of workflows that have none active (a safety net for
    promotions missed when a run ended outside a master, e.g. stopped while SUBMITTED)."""
    with sf.begin() as s:
        stalled = q_serial.stalled(s)
        kinds = {key: q_serial.execution_type(s, *key) for key in stalled}
        promoted = [
            iid
            for (wid, _), kind in kinds.items()
            if (iid := q_serial.promote_next(s, wid, kind, master_id, epoch)) is not None
        ]
    return promoted
