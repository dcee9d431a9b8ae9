"""Users and their API tokens: create and list users, the bootstrap admin, tokens stored as SHA-256
hashes only (created, looked up by hash with expiry and revocation read on every call, revoked).
Functions take a session and never commit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound
from db.models_auth import ApiToken, AppUser

BOOTSTRAP_NAME = "admin"
# last_used_at is written at most this often per token (not a write per request)
LAST_USED_EVERY = timedelta(seconds=60)


def create(s: Session, name: str, role: str) -> AppUser:
    row = AppUser(name=name, role=role, bootstrap=False, disabled=False)
    s.add(row)
    try:
        s.flush()
    except IntegrityError:
        raise Conflict(f"a user named {name!r} already exists", {"name": name}) from None
    s.refresh(row)
    return row


def get(s: Session, user_id: int) -> AppUser:
    row = s.get(AppUser, user_id)
    if row is None:
        raise NotFound(f"user {user_id} not found", {"user_id": user_id})
    return row


def find(s: Session, user_id: int) -> AppUser | None:
    return s.get(AppUser, user_id)


def by_ref(s: Session, ref: str) -> AppUser:
    """A user by id (digits) or name."""
    q = select(AppUser)
    q = q.where(AppUser.id == int(ref)) if ref.isdigit() else q.where(AppUser.name == ref)
    row = s.scalar(q)
    if row is None:
        raise NotFound(f"user {ref!r} not found", {"user": ref})
    return row


def list_page(s: Session, limit: int, offset: int) -> tuple[list[AppUser], int]:
    total = s.scalar(select(func.count()).select_from(AppUser)) or 0
    rows = s.scalars(select(AppUser).order_by(AppUser.id).limit(limit).offset(offset)).all()
    return list(rows), int(total)


def bootstrap(s: Session) -> AppUser:
    """The bootstrap admin (made by revision 0008; made again here if somebody deleted it)."""
    row = s.scalar(select(AppUser).where(AppUser.bootstrap.is_(True)))
    if row is None:
        row = AppUser(name=BOOTSTRAP_NAME, role="admin", bootstrap=True, disabled=False)
        s.add(row)
        s.flush()
    return row


def update_user(s: Session, user_id: int, role: str | None, disabled: bool | None) -> AppUser:
    row = get(s, user_id)
    if row.bootstrap and (role not in (None, "admin") or disabled):
        raise Conflict("the bootstrap admin stays an enabled admin", {"user_id": user_id})
    if role is not None:
        row.role = role
    if disabled is not None:
        row.disabled = disabled
    s.flush()
    return row


# -- tokens ---------------------------------------------------------------------------------------


def add_token(
    s: Session, user_id: int, name: str, token_hash: str, expires_at: datetime | None
) -> ApiToken:
    row = ApiToken(user_id=user_id, name=name, token_hash=token_hash, expires_at=expires_at)
    s.add(row)
    s.flush()
    s.refresh(row)
    return row


def tokens_of(s: Session, user_id: int) -> list[ApiToken]:
    return list(
        s.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id))
    )


def get_token(s: Session, token_id: int) -> ApiToken:
    row = s.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"token {token_id} not found", {"token_id": token_id})
    return row


def token_owner(s: Session, token_id: int) -> int | None:
    """The user id of a token (None: no such token)."""
    return s.scalar(select(ApiToken.user_id).where(ApiToken.id == token_id))


def revoke(s: Session, token_id: int) -> bool:
    """Revoke a token (the next request with it is a 401); False if it was revoked already."""
    res = s.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    return bool(res.rowcount)  # type: ignore[attr-defined]


def live_token(
    s: Session, token_hash: str, now: datetime | None = None
) -> tuple[ApiToken, AppUser] | None:
    """The token with this hash and its user, if it is neither revoked nor expired and the user
    is enabled; its last use is recorded (at most once a minute)."""
    now = now or datetime.now(UTC)
    row = s.execute(
        select(ApiToken, AppUser)
        .join(AppUser, AppUser.id == ApiToken.user_id)
        .where(ApiToken.token_hash == token_hash)
    ).first()
    if row is None:
        return None
    token, user = row[0], row[1]
    if token.revoked_at is not None or user.disabled:
        return None
    if token.expires_at is not None and token.expires_at <= now:
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_EVERY:
        s.execute(update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now))
    return token, user
