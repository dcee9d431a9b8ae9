"""dagkeeper: the Python SDK for users (workflow-as-code over the REST API) and the client CLI.

It imports no server package: everything it does goes through the REST API. Names are loaded
on first use, so ``dagkeeper --help`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Client": "client",
    "Run": "runs",
    "LogLine": "runs",
    "Workflow": "workflow",
    "Submitted": "workflow",
    "BaseTask": "tasks",
    "Shell": "task_types",
    "Python": "task_types",
    "Sql": "task_types",
    "Procedure": "task_types",
    "Http": "task_types",
    "Spark": "task_types",
    "SubWorkflow": "task_types",
    "Dependent": "task_types",
    "dependency": "task_types",
    "Conditions": "task_types",
    "Switch": "task_types",
    "FanOut": "task_types",
    "Channel": "kunlun",
    "Task": "kunlun",
    "Mission": "kunlun",
    "WorkflowState": "states",
    "TaskState": "states",
    **{
        n: "errors"
        for n in (
            "DagkeeperError",
            "DefinitionError",
            "ApiError",
            "BadRequest",
            "Unauthorized",
            "Forbidden",
            "NotFound",
            "Conflict",
            "TooLarge",
            "Invalid",
            "ServerError",
            "Unreachable",
            "RunTimeout",
        )
    },
}
__all__ = [
    "ApiError",
    "BadRequest",
    "BaseTask",
    "Channel",
    "Client",
    "Conditions",
    "Conflict",
    "DagkeeperError",
    "DefinitionError",
    "Dependent",
    "FanOut",
    "Forbidden",
    "Http",
    "Invalid",
    "LogLine",
    "Mission",
    "NotFound",
    "Procedure",
    "Python",
    "Run",
    "RunTimeout",
    "ServerError",
    "Shell",
    "Spark",
    "Sql",
    "SubWorkflow",
    "Submitted",
    "Switch",
    "Task",
    "TaskState",
    "TooLarge",
    "Unauthorized",
    "Unreachable",
    "Workflow",
    "WorkflowState",
    "dependency",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dagkeeper' has no attribute {name!r}")
    value = getattr(import_module(f"dagkeeper.{module}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from dagkeeper.client import Client
    from dagkeeper.errors import (
        ApiError,
        BadRequest,
        Conflict,
        DagkeeperError,
        DefinitionError,
        Forbidden,
        Invalid,
        NotFound,
        RunTimeout,
        ServerError,
        TooLarge,
        Unauthorized,
        Unreachable,
    )
    from dagkeeper.kunlun import Channel, Mission, Task
    from dagkeeper.runs import LogLine, Run
    from dagkeeper.states import TaskState, WorkflowState
    from dagkeeper.task_types import (
        Conditions,
        Dependent,
        FanOut,
        Http,
        Procedure,
        Python,
        Shell,
        Spark,
        Sql,
        SubWorkflow,
        Switch,
        dependency,
    )
    from dagkeeper.tasks import BaseTask
    from dagkeeper.workflow import Submitted, Workflow
