"""The FANOUT driver (master-run): start() inserts one sub-execution row per target host; poll()
queues committed ones on their hosts' queues, fails unclaimed ones after their deadline, and
judges the node (all SUCCESS, or FAILURE; fail-fast kills the rest); cancel() kills them all."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from kazoo.exceptions import NodeExistsError, NoNodeError
from sqlalchemy.orm import Session

from coord import membership, signals
from coord.queue import format_key
from core import fanout
from core import params as params_mod
from core.errors import ValidationError
from core.states import TaskState
from db import fanout as q_fanout
from db.attempts import AttemptRow
from master import logical

log = logging.getLogger(__name__)

# How soon poll() runs after start() to queue the rows start() inserted (after their commit).
QUEUE_AFTER_S = 0.0
# How often a FANOUT with running sub-executions is polled even without an event (a backstop).
BACKSTOP_S = 30.0


def _actor(ctx: logical.LogicalContext) -> str:
    return f"master {ctx.master_id}@{ctx.epoch}"


def _states(rows: list[q_fanout.SubRow]) -> list[fanout.SubState]:
    return [
        fanout.SubState(
            id=r.id,
            host=r.host,
            state=r.state,
            queued_at=r.dispatch_time or r.submit_time,
            exit_code=r.exit_code,
            reason=r.reason,
            worker_id=r.worker_id,
            lease_token=r.lease_token,
        )
        for r in rows
    ]


class FanoutDriver:
    """Runs FANOUT tasks; holds nothing in memory (everything is in the sub-execution rows)."""

    def start(
        self, ctx: logical.LogicalContext, s: Session, attempt_id: int, now: datetime
    ) -> logical.Verdict:
        try:
            spec = fanout.parse(ctx.task.model_dump())
        except ValueError as exc:
            return logical.Verdict(TaskState.FAILURE, reason=f"FANOUT: {exc}")
        if ctx.zk is None:
            return logical.Verdict(TaskState.FAILURE, reason="FANOUT needs ZooKeeper")
        targets, dead = fanout.resolve_targets(spec, membership.live_hosts(ctx.zk, spec.group))
        if not targets:
            return logical.Verdict(
                TaskState.FAILURE, reason=f"FANOUT: no live worker in group {spec.group}"
            )
        base = ctx.instance.schedule_time or ctx.instance.start_time or now
        new = []
        for sub in fanout.expand(ctx.task.name, spec, targets, ctx.params):
            body: dict[str, object] = {
                "fanout": {"parent_id": attempt_id, "host": sub.host, "params": sub.params},
                "timeout_s": spec.per_target_timeout_s,
                "timeout_strategy": "FAILED",
            }
            try:
                body["command"] = params_mod.render_shell(
                    spec.command, sub.params, base, ctx.spec.timezone
                )
                body["env"] = {**params_mod.params_to_env(sub.params), fanout.TARGET_ENV: sub.host}
            except ValidationError as exc:  # the worker fails it with this reason
                body["command"], body["env"], body["render_error"] = spec.command, {}, exc.message
            if sub.host in dead:
                why = f"no live worker on host {sub.host}"
                new.append(q_fanout.NewSub(sub.host, sub.name, body, TaskState.FAILURE.value, why))
            else:
                new.append(q_fanout.NewSub(sub.host, sub.name, body))
        ids = q_fanout.insert_subs(s, ctx.instance.id, attempt_id, new)
        log.info(
            "%s: instance %d FANOUT %s (%d): %d sub-execution(s) on %s%s",
            _actor(ctx),
            ctx.instance.id,
            ctx.task.name,
            attempt_id,
            len(ids),
            ",".join(targets),
            f" ({len(dead)} without a live worker: {','.join(dead)})" if dead else "",
        )
        if len(dead) == len(targets) or (dead and spec.fail_fast):
            return self._judge(ctx, s, attempt_id, spec, now)
        # queue them once this transaction has committed (a queue entry never precedes its row)
        return logical.Verdict(None, wake_at=now + timedelta(seconds=QUEUE_AFTER_S))

    def poll(
        self, ctx: logical.LogicalContext, s: Session, attempt: AttemptRow, now: datetime
    ) -> logical.Verdict:
        try:
            spec = fanout.parse(ctx.task.model_dump())
        except ValueError as exc:
            return logical.Verdict(TaskState.FAILURE, reason=f"FANOUT: {exc}")
        self._queue(ctx, s, q_fanout.subs_of(s, attempt.id))
        return self._judge(ctx, s, attempt.id, spec, now)

    def cancel(
        self,
        ctx: logical.LogicalContext,
        s: Session,
        attempt: AttemptRow,
        target: TaskState,
        now: datetime,
    ) -> logical.Verdict:
        if target != TaskState.KILL:
            # a pause lets the sub-executions finish, as it lets a worker's running task finish
            return logical.Verdict(None)
        rows = q_fanout.subs_of(s, attempt.id)
        live = [r.id for r in rows if r.state not in fanout.FINAL_STATES]
        self._kill(ctx, s, rows, live, "killed with its FANOUT task")
        return logical.Verdict(
            TaskState.KILL, output=self._output(rows), reason=f"killed; {len(live)} cancelled"
        )

    # ------------------------------------------------------------------------------------
    def _judge(
        self,
        ctx: logical.LogicalContext,
        s: Session,
        attempt_id: int,
        spec: fanout.FanoutSpec,
        now: datetime,
    ) -> logical.Verdict:
        rows = q_fanout.subs_of(s, attempt_id)
        j = fanout.judge(spec, _states(rows), now)
        if j.expire:
            why = (
                f"not started within {fanout.claim_deadline_s(spec):g}s"
                " (no live worker on its host took it)"
            )
            moved = q_fanout.fail_unstarted(s, list(j.expire), TaskState.FAILURE.value, why)
            self._unqueue(ctx, [r for r in rows if r.id in moved])
            rows = q_fanout.subs_of(s, attempt_id)
            j = fanout.judge(spec, _states(rows), now)
        if j.state is None:
            wake = j.wake_at or now + timedelta(seconds=BACKSTOP_S)
            return logical.Verdict(None, wake_at=min(wake, now + timedelta(seconds=BACKSTOP_S)))
        if j.cancel:
            self._kill(ctx, s, rows, list(j.cancel), "cancelled: fail-fast after a failure")
            rows = q_fanout.subs_of(s, attempt_id)
        log.info(
            "%s: instance %d FANOUT %s (%d) %s: %s",
            _actor(ctx),
            ctx.instance.id,
            ctx.task.name,
            attempt_id,
            j.state,
            j.reason,
        )
        return logical.Verdict(TaskState(j.state), output=self._output(rows), reason=j.reason)

    @staticmethod
    def _output(rows: list[q_fanout.SubRow]) -> dict[str, object]:
        return fanout.summary(_states(rows), {r.id: r.output for r in rows})

    def _queue(self, ctx: logical.LogicalContext, s: Session, rows: list[q_fanout.SubRow]) -> None:
        """Push committed SUBMITTED sub-executions onto their hosts' queues (an entry that exists
        is kept) and mark them DISPATCHED."""
        todo = [r for r in rows if r.state == TaskState.SUBMITTED.value]
        if not todo or ctx.zk is None:
            return
        client, paths = ctx.zk.client, ctx.zk.paths
        pushed = []
        for r in todo:
            key = format_key(ctx.instance.priority, ctx.instance.id, r.priority, r.id)
            try:
                client.create(paths.host_queue_entry(r.host, key), b"", makepath=True)
            except NodeExistsError:
                pass
            pushed.append(r.id)
        q_fanout.mark_dispatched(s, pushed)
        log.debug(
            "%s: instance %d: %d sub-execution(s) queued on their hosts",
            _actor(ctx),
            ctx.instance.id,
            len(pushed),
        )

    def _unqueue(self, ctx: logical.LogicalContext, rows: list[q_fanout.SubRow]) -> None:
        if ctx.zk is None:
            return
        for r in rows:
            key = format_key(ctx.instance.priority, ctx.instance.id, r.priority, r.id)
            try:
                ctx.zk.client.delete(ctx.zk.paths.host_queue_entry(r.host, key))
            except NoNodeError:
                pass
            except Exception as exc:  # the worker finds it not startable anyway
                log.debug("%s: cannot remove host queue entry %s: %s", _actor(ctx), key, exc)

    def _kill(
        self,
        ctx: logical.LogicalContext,
        s: Session,
        rows: list[q_fanout.SubRow],
        ids: list[int],
        why: str,
    ) -> None:
        """Cancel unstarted ones (KILL, off their queues) and ask the workers of running ones to
        kill them (they report KILL under their lease token)."""
        wanted = set(ids)
        moved = set(q_fanout.fail_unstarted(s, sorted(wanted), TaskState.KILL.value, why))
        self._unqueue(ctx, [r for r in rows if r.id in moved])
        if ctx.zk is None:
            return
        for r in rows:
            if r.id in wanted and r.id not in moved and r.worker_id:
                try:
                    signals.request_kill(ctx.zk, r.worker_id, r.id, _actor(ctx))
                except Exception as exc:
                    log.warning(
                        "%s: cannot ask %s to kill sub-execution %d: %s",
                        _actor(ctx),
                        r.worker_id,
                        r.id,
                        exc,
                    )


DRIVER = FanoutDriver()
