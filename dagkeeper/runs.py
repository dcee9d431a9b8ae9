"""``Run``: one workflow instance seen from the client: its state and tasks, ``wait()`` until
it ends, ``logs()`` of its tasks (following them while they run) and the control actions."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dagkeeper.errors import RunTimeout
from dagkeeper.states import WORKFLOW_SETTLED, WORKFLOW_TERMINAL, WorkflowState

if TYPE_CHECKING:
    from dagkeeper.client import Client


@dataclass(frozen=True)
class LogLine:
    task: str  # the task's name (a FANOUT sub-execution: task@host)
    task_instance_id: int
    text: str

    def __str__(self) -> str:
        return f"[{self.task}] {self.text}"


class Run:
    """A workflow instance. ``data`` is the last ``GET /instances/{id}`` answer (``refresh()``
    reads it again); ``tasks`` are its task attempts in the order they were created."""

    def __init__(self, client: Client, instance_id: int, data: dict[str, Any] | None = None):
        self.client = client
        self.id = instance_id
        self.data: dict[str, Any] = data or {}

    def __repr__(self) -> str:
        return f"Run(id={self.id}, state={self.data.get('state')!r})"

    def refresh(self) -> Run:
        self.data = self.client.instance(self.id)
        return self

    def _get(self) -> dict[str, Any]:
        if not self.data:
            self.refresh()
        return self.data

    @property
    def state(self) -> str:
        return str(self._get()["state"])

    @property
    def succeeded(self) -> bool:
        return self.state == WorkflowState.SUCCESS

    @property
    def finished(self) -> bool:
        return self.state in WORKFLOW_TERMINAL

    @property
    def tasks(self) -> list[dict[str, Any]]:
        """Every task attempt (retries and FANOUT sub-executions included), oldest first."""
        return sorted(self._get().get("tasks") or [], key=lambda t: int(t["id"]))

    def task(self, name: str) -> dict[str, Any]:
        """The latest attempt of the task called ``name``."""
        found = [t for t in self.tasks if t["name"] == name]
        if not found:
            raise KeyError(f"run {self.id} has no task {name!r} (yet)")
        return found[-1]

    def wait(
        self,
        timeout: float | None = None,
        poll_s: float = 0.5,
        on_update: Callable[[Run], None] | None = None,
        settled: bool = True,
    ) -> Run:
        """Poll until the run has ended (SUCCESS, FAILURE, STOP) or, with ``settled``, rests in
        PAUSE; ``on_update`` sees every answer. ``RunTimeout`` after ``timeout`` seconds."""
        until = WORKFLOW_SETTLED if settled else WORKFLOW_TERMINAL
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.refresh()
            if on_update is not None:
                on_update(self)
            if self.state in until:
                return self
            if deadline is not None and time.monotonic() >= deadline:
                raise RunTimeout(f"run {self.id} is still {self.state} after {timeout:g} s")
            time.sleep(poll_s)

    def logs(self, follow: bool = False, poll_s: float = 0.5) -> Iterator[LogLine]:
        """The log lines of every task attempt, attempt by attempt in creation order. With
        ``follow`` it waits for attempts still to come and for lines still to be written,
        until the run has ended."""
        done: set[int] = set()
        while True:
            self.refresh()
            ended = self.state in WORKFLOW_SETTLED
            pending = [t for t in self.tasks if int(t["id"]) not in done]
            for t in pending:  # a running attempt is streamed to its end before the next
                for text in self.client.log_lines(int(t["id"]), follow=follow):
                    yield LogLine(str(t["name"]), int(t["id"]), text)
                done.add(int(t["id"]))
            if not follow or (ended and not pending):
                return
            if not pending:
                time.sleep(poll_s)

    # -- control ------------------------------------------------------------------------------

    def _act(self, action: str) -> Run:
        self.data = {}
        self.client.control(self.id, action)
        return self

    def stop(self) -> Run:
        return self._act("stop")

    def pause(self) -> Run:
        return self._act("pause")

    def resume(self) -> Run:
        return self._act("resume")

    def rerun(self) -> Run:
        return self._act("rerun")

    def recover(self) -> Run:
        return self._act("recover")
