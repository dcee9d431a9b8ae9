"""Client CLI commands beyond runs: schedules, backfill (with progress), cluster, release state
(online/offline), export and import of definitions (dagkeeper documents or DolphinScheduler 3.x
exports)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dagkeeper.cli_app import Output, OutputOpt, ParamOpt, app, client, parse_params

WorkflowArg = Annotated[str, typer.Argument(metavar="WORKFLOW", help="workflow name or id")]


@app.command()
def schedules(
    workflow: Annotated[
        str | None, typer.Option(metavar="WORKFLOW", help="workflow name or id")
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """List schedules."""
    from dagkeeper import cli_show as show

    rows = client().schedules(workflow)
    if output == Output.json:
        return show.print_json(rows)
    cols = ["id", "workflow_id", "cron", "timezone", "enabled", "misfire", "next_fire_time"]
    show.table(rows, cols)


@app.command()
def backfill(
    workflow: WorkflowArg,
    start: Annotated[
        str, typer.Option(metavar="DATE", help="first date (inclusive), e.g. 2026-01-01")
    ],
    end: Annotated[str, typer.Option(metavar="DATE", help="last date (inclusive)")],
    parallel: Annotated[
        int, typer.Option(metavar="N", min=1, help="dates at once (1: one after the other)")
    ] = 1,
    param: ParamOpt = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="follow it to its end")] = True,
    timeout: Annotated[
        float | None, typer.Option(metavar="SECONDS", help="give up waiting after N s")
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Run a workflow for past dates (its schedule's fire times, else daily) with progress;
    exit 0 when every date succeeded, 1 otherwise."""
    from dagkeeper import cli_show as show
    from dagkeeper.states import BackfillState, WorkflowState

    c = client()
    accepted = c.backfill(
        workflow, start=start, end=end, parallelism=parallel, params=parse_params(param)
    )
    bid = int(accepted["backfill_id"])
    if output == Output.table:
        show.out.print(f"backfill {bid}: {accepted['dates']} date(s), {parallel} at a time")
    if not wait:
        if output == Output.json:
            show.print_json(accepted)
        return
    final = show.follow_backfill(c.backfill_status, bid, timeout)
    failed = [r for r in final["runs"] if r.get("state") != WorkflowState.SUCCESS]
    if output == Output.json:
        show.print_json(final)
    else:
        verdict = "all succeeded" if not failed else f"{len(failed)} did not succeed"
        show.out.print(f"backfill {bid}: {final['state']}: {final['total']} date(s), {verdict}")
        for r in failed[:20]:
            show.out.print(
                f"  {r['schedule_time']}: instance {r.get('instance_id')} {r.get('state')}"
            )
    raise typer.Exit(0 if final["state"] == BackfillState.DONE and not failed else 1)


@app.command()
def cluster(output: OutputOpt = Output.table) -> None:
    """Masters and workers as registered in ZooKeeper, queue depths and the cron leader."""
    from dagkeeper import cli_show as show

    data = client().cluster()
    if output == Output.json:
        return show.print_json(data)
    members = [{"role": "master", **m} for m in data.get("masters", [])]
    members += [{"role": "worker", **w} for w in data.get("workers", [])]
    show.table(members, ["role", "id", "host", "groups", "load", "capacity", "epoch"])
    queues = ", ".join(f"{g}={n}" for g, n in sorted((data.get("queues") or {}).items())) or "-"
    show.out.print(f"cron leader: {data.get('cron_leader') or '-'}   queues: {queues}")


def _release(workflow: str, state: str, output: Output) -> None:
    from dagkeeper import cli_show as show

    done = client().set_release_state(workflow, state)
    if output == Output.json:
        return show.print_json(done)
    show.out.print(f"workflow {done.get('name', workflow)!r}: {done.get('release_state', state)}")


@app.command()
def online(workflow: WorkflowArg, output: OutputOpt = Output.table) -> None:
    """Let a workflow run again and its schedules fire (release state ONLINE)."""
    _release(workflow, "ONLINE", output)


@app.command()
def offline(workflow: WorkflowArg, output: OutputOpt = Output.table) -> None:
    """Refuse runs of a workflow and stop its schedules firing (release state OFFLINE)."""
    _release(workflow, "OFFLINE", output)


@app.command()
def export(
    workflow: WorkflowArg,
    version: Annotated[
        int | None, typer.Option(metavar="N", min=1, help="one version (default: all)")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", metavar="FILE", help="write here, not stdout")
    ] = None,
) -> None:
    """Export a workflow (all versions or one) with its schedules as one JSON document."""
    doc = client().export(workflow, version)
    text = json.dumps(doc, indent=2) + "\n"
    if file is None:
        typer.echo(text, nl=False)
    else:
        file.write_text(text)
        typer.echo(f"exported {doc.get('name', workflow)!r} to {file}", err=True)


@app.command(name="import")
def import_(
    file: Annotated[
        Path,
        typer.Argument(metavar="FILE", help="a dagkeeper export or a DolphinScheduler 3.x export"),
    ],
    rename: Annotated[
        str | None, typer.Option(metavar="NAME", help="import under this name")
    ] = None,
    new_version: Annotated[bool, typer.Option(help="on a name clash: add versions to it")] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Import workflow definitions; a name clash is refused unless --rename or --new-version."""
    from dagkeeper import cli_show as show
    from dagkeeper.errors import DefinitionError

    if rename and new_version:
        raise typer.BadParameter("give --rename or --new-version, not both", param_hint="--rename")
    try:
        doc = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise DefinitionError(f"{file}: cannot read a JSON document: {exc}") from None
    mode = "rename" if rename else "new_version" if new_version else "fail"
    done = client().import_(doc, on_conflict=mode, rename=rename)
    if output == Output.json:
        return show.print_json(done)
    for w in done.get("workflows", []):
        show.out.print(
            f"imported workflow {w['name']!r} (id {w['id']}, version(s) {w.get('versions')}, {w.get('action')})"
        )
    for note in done.get("unmapped", []):
        show.out.print(f"  not mapped: {note}")
