"""The command loop's one pass: lock pending commands, turn each into an owned workflow instance
and delete it, all in one transaction (a command becomes at most one instance)."""

from __future__ import annotations

import logging

from common.db import commands as q_commands
from common.db import instances as q_instances
from common.db.engine import SessionFactory
from common.states import CommandType

log = logging.getLogger(__name__)

# Commands that start work on an instance this master will own.
STARTING = {CommandType.START_PROCESS.value, CommandType.SCHEDULER.value}


def claim_commands(sf: SessionFactory, master_id: str, epoch: int, limit: int) -> list[int]:
    """Claim up to ``limit`` commands; return the ids of the instances we now own."""
    owned: list[int] = []
    with sf.begin() as s:
        cmds = q_commands.lock_pending(s, limit)
        for c in cmds:
            if c.type not in STARTING:
                log.warning(
                    "master %s@%d: command %d of type %s is not supported yet; dropped",
                    master_id,
                    epoch,
                    c.id,
                    c.type,
                )
                continue
            if c.instance_id is not None:
                if q_instances.take_ownership(s, c.instance_id, master_id, epoch):
                    owned.append(c.instance_id)
                else:
                    log.warning(
                        "master %s@%d: command %d: instance %d is not SUBMITTED; dropped",
                        master_id,
                        epoch,
                        c.id,
                        c.instance_id,
                    )
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
        log.info(
            "master %s@%d: claimed %d command(s): instances %s",
            master_id,
            epoch,
            len(owned),
            owned[:20],
        )
    return owned
