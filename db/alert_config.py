"""Alert channels and groups in PostgreSQL: list, read, write, and the group <-> channel links
(by name, refused with the missing names). Never commits."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.errors import NotFound
from db.models_alerts import AlertChannel, AlertGroup, AlertGroupChannel


def channel_groups(s: Session, channel_ids: list[int]) -> dict[int, list[str]]:
    """channel id -> the names of the groups it is in."""
    out: dict[int, list[str]] = {i: [] for i in channel_ids}
    rows = s.execute(
        select(AlertGroupChannel.channel_id, AlertGroup.name)
        .join(AlertGroup, AlertGroup.id == AlertGroupChannel.group_id)
        .where(AlertGroupChannel.channel_id.in_(channel_ids))
        .order_by(AlertGroup.name)
    ).all()
    for cid, name in rows:
        out[int(cid)].append(str(name))
    return out


def list_channels(s: Session, limit: int, offset: int) -> tuple[list[AlertChannel], int]:
    total = s.scalar(select(func.count()).select_from(AlertChannel)) or 0
    rows = s.scalars(select(AlertChannel).order_by(AlertChannel.id).limit(limit).offset(offset))
    return list(rows), int(total)


def get_channel(s: Session, channel_id: int, lock: bool = False) -> AlertChannel:
    row = s.get(AlertChannel, channel_id, with_for_update=lock)
    if row is None:
        raise NotFound(f"alert channel {channel_id} not found", {"id": channel_id})
    return row


def put_channel(
    s: Session,
    row: AlertChannel | None,
    *,
    name: str,
    kind: str,
    params: dict[str, Any],
    secret_enc: str | None,
    keep_secret: bool,
    is_global: bool,
    description: str,
) -> AlertChannel:
    """Create (``row`` None) or replace a channel; ``keep_secret`` keeps the stored secret."""
    if row is None:
        row = AlertChannel(name=name, kind=kind)
        s.add(row)
    row.name, row.kind, row.params = name, kind, params
    row.is_global, row.description = is_global, description
    if not keep_secret:
        row.secret_enc = secret_enc
    row.updated_at = func.now()  # type: ignore[assignment]
    s.flush()
    s.refresh(row)
    return row


def channel_ids(s: Session, names: list[str]) -> list[int]:
    """Ids of the channels ``names`` (in order); NotFound naming those that do not exist."""
    found = dict(
        s.execute(
            select(AlertChannel.name, AlertChannel.id).where(AlertChannel.name.in_(names))
        ).all()
    )
    missing = [n for n in names if n not in found]
    if missing:
        raise NotFound(f"no alert channel named {', '.join(missing)}", {"channels": missing})
    return [int(found[n]) for n in names]


def group_channels(s: Session, group_ids: list[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {i: [] for i in group_ids}
    rows = s.execute(
        select(AlertGroupChannel.group_id, AlertChannel.name)
        .join(AlertChannel, AlertChannel.id == AlertGroupChannel.channel_id)
        .where(AlertGroupChannel.group_id.in_(group_ids))
        .order_by(AlertChannel.name)
    ).all()
    for gid, name in rows:
        out[int(gid)].append(str(name))
    return out


def list_groups(s: Session, limit: int, offset: int) -> tuple[list[AlertGroup], int]:
    total = s.scalar(select(func.count()).select_from(AlertGroup)) or 0
    rows = s.scalars(select(AlertGroup).order_by(AlertGroup.id).limit(limit).offset(offset))
    return list(rows), int(total)


def get_group(s: Session, group_id: int, lock: bool = False) -> AlertGroup:
    row = s.get(AlertGroup, group_id, with_for_update=lock)
    if row is None:
        raise NotFound(f"alert group {group_id} not found", {"id": group_id})
    return row


def put_group(
    s: Session, row: AlertGroup | None, *, name: str, description: str, channels: list[str]
) -> AlertGroup:
    ids = channel_ids(s, channels)
    if row is None:
        row = AlertGroup(name=name)
        s.add(row)
    row.name, row.description = name, description
    row.updated_at = func.now()  # type: ignore[assignment]
    s.flush()
    s.execute(delete(AlertGroupChannel).where(AlertGroupChannel.group_id == row.id))
    for cid in dict.fromkeys(ids):
        s.add(AlertGroupChannel(group_id=row.id, channel_id=cid))
    s.flush()
    s.refresh(row)
    return row
