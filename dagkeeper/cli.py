"""The client CLI (``dagkeeper login|apply|workflows|run|instances|show|logs|stop|...``) over the
REST API. Exit codes: 0 success, 1 the run (or backfill) failed, 2 a usage or API error, told in
one line, never a traceback. Heavy modules are imported by the commands, so ``--help`` is fast."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

from dagkeeper.cli_app import (
    STATE,
    IdArg,
    Output,
    OutputOpt,
    ParamOpt,
    app,
    client,
    parse_params,
)

__all__ = ["app", "cli_admin", "main"]

# -- login, apply, workflows --------------------------------------------------------------------


@app.command()
def login(
    url: Annotated[str | None, typer.Option(metavar="URL", help="API base URL")] = None,
    token: Annotated[
        str | None, typer.Option(metavar="TOKEN", help="API token; '-' reads it from stdin")
    ] = None,
) -> None:
    """Check a URL and token against the API and save them (~/.dagkeeper/client.json, 0600)."""
    from dagkeeper import config
    from dagkeeper.client import Client

    url = url or STATE.url or config.resolve().url
    token = token or STATE.token
    if token == "-" or (token is None and not sys.stdin.isatty()):  # noqa: S105 (stdin)
        token = sys.stdin.readline().strip()
    elif token is None:
        token = typer.prompt("API token", hide_input=True)
    if not token:
        raise typer.BadParameter("an empty token", param_hint="--token")
    with Client(url, token, retry_deadline_s=5) as c:
        me = c.me()
        path = config.write_file(c.url, token)
    who = f"as {me['name']}" + (f" ({me['role']})" if me.get("role") else "")
    typer.echo(
        f"logged in to {c.url} {who if me.get('name') else '(token accepted)'}; saved to {path}"
    )


@app.command()
def apply(
    file: Annotated[
        str, typer.Argument(metavar="FILE", help="a .json, .yaml/.yml or SDK .py file")
    ],
    output: OutputOpt = Output.table,
) -> None:
    """Create or update the workflows a file defines (a no-op for unchanged ones)."""
    from dagkeeper import cli_show as show
    from dagkeeper.spec import load_file
    from dagkeeper.workflow import Workflow, apply_spec

    c = client()
    done = []
    for item in load_file(file):
        result = item.submit(c) if isinstance(item, Workflow) else apply_spec(c, item)
        done.append(result)
        if output == Output.table:
            show.out.print(str(result))
    if output == Output.json:
        show.print_json([vars(r) for r in done])


@app.command()
def workflows(
    name: Annotated[str | None, typer.Option(metavar="TEXT", help="names containing this")] = None,
    output: OutputOpt = Output.table,
) -> None:
    """List the workflows."""
    from dagkeeper import cli_show as show

    rows = client().workflows(name=name)
    if output == Output.json:
        return show.print_json(rows)
    cols = ["id", "name", "version", "release_state", "description", "updated_at"]
    show.table(rows, [c for c in cols if c != "release_state" or any(c in r for r in rows)])


# -- runs -------------------------------------------------------------------------------------


@app.command()
def run(
    workflow: Annotated[str, typer.Argument(metavar="WORKFLOW", help="workflow name or id")],
    param: ParamOpt = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="follow the run to its end")
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(metavar="SECONDS", help="with --wait: give up after N s")
    ] = None,
    priority: Annotated[
        str | None, typer.Option(metavar="PRIORITY", help="HIGHEST .. LOWEST")
    ] = None,
    worker_group: Annotated[
        str | None, typer.Option(metavar="GROUP", help="group of tasks naming none")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="walk the DAG without running tasks")] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Start a run; with --wait show its tasks live and exit 0 on SUCCESS, 1 otherwise."""
    from dagkeeper import cli_show as show
    from dagkeeper.errors import RunTimeout
    from dagkeeper.states import WorkflowState

    c = client()
    options: dict[str, Any] = {"priority": priority, "worker_group": worker_group}
    if dry_run:
        options["dry_run"] = True
    r = c.run(workflow, parse_params(param), **options)
    if not wait:
        if output == Output.json:
            return show.print_json({"instance_id": r.id})
        show.out.print(f"run {r.id} submitted (dagkeeper show {r.id})")
        return None
    total = len(c.workflow(r.refresh().data["workflow_id"], r.data["version"]).get("tasks") or [])
    view = show.RunView(r, total, show.out if output == Output.table else show.err)
    try:
        view.follow(timeout)
    except RunTimeout as exc:
        show.err.print(f"dagkeeper: {exc}")
        raise typer.Exit(1) from None
    if output == Output.json:
        show.print_json(r.data)
    else:
        took = show.duration(r.data.get("start_time"), r.data.get("end_time")) or "-"
        why = f": {r.data['reason']}" if r.data.get("reason") else ""
        show.out.print(f"run {r.id} ({r.data.get('workflow_name')}): {r.state} in {took}{why}")
    raise typer.Exit(0 if r.state == WorkflowState.SUCCESS else 1)


@app.command()
def instances(
    workflow: Annotated[
        str | None, typer.Option(metavar="WORKFLOW", help="workflow name or id")
    ] = None,
    state: Annotated[str | None, typer.Option(metavar="STATE", help="state(s), comma list")] = None,
    limit: Annotated[int, typer.Option(metavar="N", min=1)] = 20,
    output: OutputOpt = Output.table,
) -> None:
    """List workflow instances, newest first."""
    from dagkeeper import cli_show as show

    rows = client().instances(workflow, state, limit)
    if output == Output.json:
        return show.print_json(rows)
    for r in rows:
        r["time"] = show.duration(r.get("start_time"), r.get("end_time"))
    cols = ["id", "workflow_name", "version", "state", "schedule_time", "start_time", "time"]
    show.table(rows, cols, {"workflow_name": "workflow", "schedule_time": "scheduled"})


@app.command()
def show(instance_id: IdArg, output: OutputOpt = Output.table) -> None:
    """One instance with its tasks."""
    from dagkeeper import cli_show as show

    inst = client().instance(instance_id)
    if output == Output.json:
        return show.print_json(inst)
    show.show_instance(inst)


@app.command()
def logs(
    task_instance: Annotated[
        int | None, typer.Argument(metavar="TASK_INSTANCE", help="a task instance id", min=1)
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="print lines as they come")
    ] = False,
    run_id: Annotated[
        int | None, typer.Option("--run", metavar="ID", help="every task of an instance", min=1)
    ] = None,
) -> None:
    """Print a task instance's log (or, with --run, every task's log of an instance)."""
    if (task_instance is None) == (run_id is None):
        raise typer.BadParameter(
            "give a TASK_INSTANCE id or --run INSTANCE", param_hint="TASK_INSTANCE"
        )
    c = client()
    if run_id is not None:
        from dagkeeper.runs import Run

        for line in Run(c, run_id).logs(follow=follow):
            print(str(line), flush=True)
        return
    assert task_instance is not None
    for text in c.log_lines(task_instance, follow=follow):
        print(text, flush=True)


def _control(action: str, instance_id: int, output: Output) -> None:
    from dagkeeper import cli_show as show

    done = client().control(instance_id, action)
    if output == Output.json:
        return show.print_json(done)
    show.out.print(
        f"instance {instance_id}: {done.get('action', action)} accepted ({done.get('state')})"
    )


for _action, _help in (
    ("stop", "Stop an instance: queued tasks are cancelled, running ones killed."),
    ("pause", "Pause a running instance: nothing new starts, running tasks finish."),
    ("resume", "Resume a paused instance."),
    ("rerun", "Run a finished instance again from the start."),
    ("recover", "Run the failed, killed and skipped tasks of a finished instance again."),
):

    def _command(instance_id: IdArg, output: OutputOpt = Output.table, _a: str = _action) -> None:
        _control(_a, instance_id, output)

    _command.__doc__ = _help
    app.command(name=_action)(_command)


# the admin commands are listed after these in --help
from dagkeeper import cli_admin  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (API and usage errors: one line on stderr, 2)."""
    from dagkeeper.errors import DagkeeperError

    try:
        app(args=argv, prog_name="dagkeeper", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except DagkeeperError as exc:
        _report(exc)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("DAGKEEPER_DEBUG"):
            raise
        print(f"dagkeeper: internal error: {type(exc).__name__}: {exc} (DAGKEEPER_DEBUG=1 shows the traceback)",
              file=sys.stderr)  # fmt: skip
        return 2
    finally:
        if STATE.client is not None:
            STATE.client.close()
            STATE.client = None
    return 0


def _report(exc: Exception) -> None:
    from dagkeeper.errors import ApiError, Invalid, Unauthorized

    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    problems = exc.problems if isinstance(exc, Invalid) else []
    if len(problems) > 1:
        text = f"the server refused it: {len(problems)} problems"
    if isinstance(exc, Unauthorized):
        text += " (HTTP 401: run `dagkeeper login` or set DAGKEEPER_TOKEN)"
    elif isinstance(exc, ApiError) and exc.status:
        text += f" (HTTP {exc.status})"
    print(f"dagkeeper: {text}", file=sys.stderr)
    if len(problems) > 1:
        for p in problems:
            print(f"  - {p.get('message')}", file=sys.stderr)
