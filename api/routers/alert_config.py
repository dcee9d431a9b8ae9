"""/alert-channels (EMAIL or WEBHOOK; secrets encrypted, write-only), /alert-groups (named sets
of channels that workflows name in ``alert_group``), one alert's delivery (``GET /alerts/{id}``)
and a test send that goes through the same outbox as every alert."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import APIRouter, Depends, Response
from sqlalchemy.exc import IntegrityError

from api.alert_schemas import (
    ChannelIn,
    ChannelOut,
    ChannelPage,
    DeliveryOut,
    GroupIn,
    GroupOut,
    GroupPage,
    split_secret,
)
from api.auth_scope import authorize
from api.deps import ApiContext, get_ctx
from api.schemas import ERROR_RESPONSES, DbId, Limit, Offset
from core.crypto import SecretBox
from core.errors import Conflict, NotFound
from db import alert_config as q
from db import alert_outbox
from db.models import Alert
from db.models_alerts import AlertGroup

router = APIRouter(tags=["alerts"], responses=ERROR_RESPONSES)
# channels and groups are global (not per project): anyone may read them, admins change them
READ = [Depends(authorize("read"))]
ADMIN = [Depends(authorize("admin"))]


@contextmanager
def _unique(what: str, name: str) -> Iterator[None]:
    try:
        yield
    except IntegrityError as exc:
        if "unique" in str(exc.orig).lower() or "duplicate" in str(exc.orig).lower():
            raise Conflict(
                f"an alert {what} named {name!r} already exists", {"name": name}
            ) from None
        raise


def _encrypt(ctx: ApiContext, kind: str, secret: str | None) -> str | None:
    if secret is None:
        return None
    key = "password" if kind == "EMAIL" else "secret"
    return SecretBox.from_settings(ctx.settings).encrypt(json.dumps({key: secret}))


# -- channels -------------------------------------------------------------------------------------


@router.post("/alert-channels", status_code=201, response_model=ChannelOut, dependencies=ADMIN)
def create_channel(body: ChannelIn, ctx: ApiContext = Depends(get_ctx)) -> ChannelOut:
    """A new channel; its password or secret is stored encrypted and never shown again."""
    params, secret = split_secret(body)
    with _unique("channel", body.name), ctx.session_factory.begin() as s:
        row = q.put_channel(
            s, None, name=body.name, kind=body.kind, params=params,
            secret_enc=_encrypt(ctx, body.kind, secret), keep_secret=False,
            is_global=body.is_global, description=body.description,
        )  # fmt: skip
        return ChannelOut.from_row(row, [])


@router.get("/alert-channels", response_model=ChannelPage, dependencies=READ)
def list_channels(
    limit: Limit = 100, offset: Offset = 0, ctx: ApiContext = Depends(get_ctx)
) -> ChannelPage:
    with ctx.session_factory() as s:
        rows, total = q.list_channels(s, limit, offset)
        groups = q.channel_groups(s, [r.id for r in rows])
        return ChannelPage(items=[ChannelOut.from_row(r, groups[r.id]) for r in rows], total=total)


@router.get("/alert-channels/{channel_id}", response_model=ChannelOut, dependencies=READ)
def get_channel(channel_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> ChannelOut:
    with ctx.session_factory() as s:
        row = q.get_channel(s, channel_id)
        return ChannelOut.from_row(row, q.channel_groups(s, [row.id])[row.id])


@router.put("/alert-channels/{channel_id}", response_model=ChannelOut, dependencies=ADMIN)
def replace_channel(
    channel_id: DbId, body: ChannelIn, ctx: ApiContext = Depends(get_ctx)
) -> ChannelOut:
    """Replace the channel; the stored secret stays unless the body gives a new one (same kind)."""
    params, secret = split_secret(body)
    with _unique("channel", body.name), ctx.session_factory.begin() as s:
        row = q.get_channel(s, channel_id, lock=True)
        keep = secret is None and row.kind == body.kind
        row = q.put_channel(
            s, row, name=body.name, kind=body.kind, params=params,
            secret_enc=_encrypt(ctx, body.kind, secret), keep_secret=keep,
            is_global=body.is_global, description=body.description,
        )  # fmt: skip
        return ChannelOut.from_row(row, q.channel_groups(s, [row.id])[row.id])


@router.delete("/alert-channels/{channel_id}", status_code=204, dependencies=ADMIN)
def delete_channel(channel_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> Response:
    """Delete it (it leaves every group it was in)."""
    with ctx.session_factory.begin() as s:
        s.delete(q.get_channel(s, channel_id, lock=True))
    return Response(status_code=204)


@router.post(
    "/alert-channels/{channel_id}/test",
    status_code=202,
    response_model=DeliveryOut,
    dependencies=ADMIN,
)
def test_channel(channel_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> DeliveryOut:
    """Queue a TEST alert to this channel alone (through a group ``test:<channel id>`` holding
    only it); follow its delivery with ``GET /alerts/{id}``."""
    with ctx.session_factory.begin() as s:
        ch = q.get_channel(s, channel_id)
        group = f"test:{ch.id}"  # fits the 100 characters of a group name
        grp = s.query(AlertGroup).filter_by(name=group).one_or_none()
        q.put_group(s, grp, name=group, description=f"test sends of channel {ch.name}",
                    channels=[ch.name])  # fmt: skip
        aid = alert_outbox.add(
            s, "TEST", f"test alert for channel {ch.name}", {"channel": ch.name}, None, group
        )
        return DeliveryOut.from_row(s.get_one(Alert, aid))


# -- groups ---------------------------------------------------------------------------------------


def _group_out(row: AlertGroup, channels: list[str]) -> GroupOut:
    return GroupOut(
        id=row.id,
        name=row.name,
        description=row.description,
        channels=channels,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.post("/alert-groups", status_code=201, response_model=GroupOut, dependencies=ADMIN)
def create_group(body: GroupIn, ctx: ApiContext = Depends(get_ctx)) -> GroupOut:
    """A group of channels (by name); 404 naming channels that do not exist."""
    with _unique("group", body.name), ctx.session_factory.begin() as s:
        row = q.put_group(s, None, name=body.name, description=body.description,
                          channels=body.channels)  # fmt: skip
        return _group_out(row, q.group_channels(s, [row.id])[row.id])


@router.get("/alert-groups", response_model=GroupPage, dependencies=READ)
def list_groups(
    limit: Limit = 100, offset: Offset = 0, ctx: ApiContext = Depends(get_ctx)
) -> GroupPage:
    with ctx.session_factory() as s:
        rows, total = q.list_groups(s, limit, offset)
        chans = q.group_channels(s, [r.id for r in rows])
        return GroupPage(items=[_group_out(r, chans[r.id]) for r in rows], total=total)


@router.get("/alert-groups/{group_id}", response_model=GroupOut, dependencies=READ)
def get_group(group_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> GroupOut:
    with ctx.session_factory() as s:
        row = q.get_group(s, group_id)
        return _group_out(row, q.group_channels(s, [row.id])[row.id])


@router.put("/alert-groups/{group_id}", response_model=GroupOut, dependencies=ADMIN)
def replace_group(group_id: DbId, body: GroupIn, ctx: ApiContext = Depends(get_ctx)) -> GroupOut:
    with _unique("group", body.name), ctx.session_factory.begin() as s:
        row = q.put_group(s, q.get_group(s, group_id, lock=True), name=body.name,
                          description=body.description, channels=body.channels)  # fmt: skip
        return _group_out(row, q.group_channels(s, [row.id])[row.id])


@router.delete("/alert-groups/{group_id}", status_code=204, dependencies=ADMIN)
def delete_group(group_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> Response:
    with ctx.session_factory.begin() as s:
        s.delete(q.get_group(s, group_id, lock=True))
    return Response(status_code=204)


# -- one alert's delivery --------------------------------------------------------------------------


@router.get("/alerts/{alert_id}", response_model=DeliveryOut, dependencies=READ)
def get_alert(alert_id: DbId, ctx: ApiContext = Depends(get_ctx)) -> DeliveryOut:
    """One alert with its delivery: status (WAIT, SENT, FAILED, SKIPPED), tries, the next try,
    each channel's outcome and the last error."""
    with ctx.session_factory() as s:
        row = s.get(Alert, alert_id)
        if row is None:
            raise NotFound(f"alert {alert_id} not found", {"id": alert_id})
        return DeliveryOut.from_row(row)
