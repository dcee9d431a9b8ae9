"""API tokens: create one for a user (the token is in this answer only; the database keeps its
SHA-256), list a user's tokens (never the token), revoke one. A user manages its own tokens, an
admin everybody's."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Response

from api.auth import Principal, new_token, token_hash
from api.auth_schemas import TokenCreated, TokenIn, TokenOut, TokenPage
from api.auth_scope import authorize, token_target, user_target
from api.deps import ApiContext, get_ctx
from api.schemas import ERROR_RESPONSES, DbId
from core.errors import ValidationError
from db import users as q
from db.models_auth import ApiToken

log = logging.getLogger(__name__)

router = APIRouter(tags=["tokens"], responses=ERROR_RESPONSES)


def token_out(t: ApiToken) -> TokenOut:
    return TokenOut(
        id=t.id,
        user_id=t.user_id,
        name=t.name,
        created_at=t.created_at,
        expires_at=t.expires_at,
        revoked_at=t.revoked_at,
        last_used_at=t.last_used_at,
    )


@router.post("/users/{user_id}/tokens", status_code=201, response_model=TokenCreated)
def create_token(
    user_id: DbId,
    body: TokenIn,
    me: Principal = Depends(authorize("admin", user_target)),
    ctx: ApiContext = Depends(get_ctx),
) -> TokenCreated:
    """A new token for the user, shown in this answer only (store it now); ``expires_at``
    (with an offset) ends it, as does ``DELETE /tokens/{id}``."""
    if body.expires_at is not None and body.expires_at <= datetime.now(UTC):
        raise ValidationError(
            "expires_at: must be in the future",
            [{"loc": ["body", "expires_at"], "message": "is not in the future"}],
        )
    token = new_token()
    with ctx.session_factory.begin() as s:
        user = q.get(s, user_id)
        row = q.add_token(s, user.id, body.name, token_hash(token), body.expires_at)
        out = TokenCreated(
            id=row.id, user_id=user.id, name=row.name, token=token, expires_at=row.expires_at
        )
    log.info("api: %s created token %d %r for user %d", me.name, out.id, out.name, user_id)
    return out


@router.get("/users/{user_id}/tokens", response_model=TokenPage)
def list_tokens(
    user_id: DbId,
    _: Principal = Depends(authorize("admin", user_target)),
    ctx: ApiContext = Depends(get_ctx),
) -> TokenPage:
    """The user's tokens, revoked and expired ones too (never the token itself)."""
    with ctx.session_factory() as s:
        q.get(s, user_id)
        rows = q.tokens_of(s, user_id)
        return TokenPage(items=[token_out(t) for t in rows], total=len(rows))


@router.delete("/tokens/{token_id}", status_code=204, response_class=Response)
def revoke_token(
    token_id: DbId,
    me: Principal = Depends(authorize("admin", token_target)),
    ctx: ApiContext = Depends(get_ctx),
) -> Response:
    """Revoke a token: the next request with it is a 401. Revoking it again changes nothing."""
    with ctx.session_factory.begin() as s:
        q.get_token(s, token_id)
        changed = q.revoke(s, token_id)
    log.info("api: %s revoked token %d%s", me.name, token_id, "" if changed else " (again)")
    return Response(status_code=204)
