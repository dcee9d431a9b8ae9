"""The client CLI's Typer app and what its commands share: global options (``--url``,
``--token``), the lazily made ``Client``, ``--output table|json`` and ``--param name=value``."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from dagkeeper.client import Client

SERVER_COMMANDS = (
    "Server commands (run on the cluster's hosts; `dagkeeper <command> --help`): master, worker,"
    " api, migrate, standalone, doctor."
)
app = typer.Typer(
    name="dagkeeper",
    help="dagkeeper: a decentralized DAG workflow scheduler. Client commands talk to the REST API"
    " (DAGKEEPER_URL / DAGKEEPER_TOKEN, or what `dagkeeper login` saved).",
    epilog=SERVER_COMMANDS,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


CLI_RETRY_DEADLINE_S = 8.0


class Output(StrEnum):
    table = "table"
    json = "json"


OutputOpt = Annotated[
    Output, typer.Option("--output", "-o", metavar="table|json", help="table, or json for scripts")
]
IdArg = Annotated[int, typer.Argument(metavar="ID", help="an instance id", min=1)]


class State:
    url: str | None = None
    token: str | None = None
    client: Client | None = None


STATE = State()


@app.callback()
def _options(
    url: Annotated[
        str | None, typer.Option(metavar="URL", help="API base URL (default: DAGKEEPER_URL, login)")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(metavar="TOKEN", help="API token (default: DAGKEEPER_TOKEN, login)"),
    ] = None,
) -> None:
    STATE.url, STATE.token = url, token


def client() -> Client:
    if STATE.client is None:
        from dagkeeper.client import Client

        # a CLI user waits less for a server that is away than a long-running SDK script
        STATE.client = Client(STATE.url, STATE.token, retry_deadline_s=CLI_RETRY_DEADLINE_S)
    return STATE.client


def parse_params(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r}: expected name=value", param_hint="--param")
        out[key.strip()] = value
    return out


ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", metavar="NAME=VALUE", help="a parameter name=value (repeatable)"),
]
