"""Request and answer models of the user surface: users, tokens (the token itself only in the
create answer), projects with their OS users, grants, /me and the audit log."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from api.schemas import Timestamp

NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.@\-]{0,99}$"
PROJECT = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$"
OS_USER = r"^[a-z_][a-z0-9_-]{0,31}$"
RoleName = Literal["admin", "editor", "operator", "viewer"]
GrantRole = Literal["editor", "operator", "viewer"]
OsUser = Annotated[str, Field(pattern=OS_USER)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectRole(BaseModel):
    name: str
    role: str


class UserIn(_In):
    name: str = Field(pattern=NAME)
    role: RoleName
    # projects granted ``role`` at once (an admin needs none: it sees every project)
    projects: list[Annotated[str, Field(pattern=PROJECT)]] = ["default"]


class UserUpdate(_In):
    role: RoleName | None = None
    disabled: bool | None = None


class UserOut(BaseModel):
    id: int
    name: str
    role: str
    bootstrap: bool
    disabled: bool
    created_at: Timestamp
    projects: list[ProjectRole]


class UserPage(BaseModel):
    items: list[UserOut]
    total: int


class TokenIn(_In):
    name: str = Field(min_length=1, max_length=100)
    expires_at: AwareDatetime | None = None


class TokenCreated(BaseModel):
    """The only answer that carries the token: store it now, it cannot be shown again."""

    id: int
    user_id: int
    name: str
    token: str
    expires_at: Timestamp | None


class TokenOut(BaseModel):
    id: int
    user_id: int
    name: str
    created_at: Timestamp
    expires_at: Timestamp | None
    revoked_at: Timestamp | None
    last_used_at: Timestamp | None


class TokenPage(BaseModel):
    items: list[TokenOut]
    total: int


class ProjectIn(_In):
    name: str = Field(pattern=PROJECT)
    description: str = Field(default="", max_length=10000)
    run_as_user: OsUser | None = None
    os_users: list[OsUser] = Field(default=[], max_length=100)

    @model_validator(mode="after")
    def _default_is_granted(self) -> ProjectIn:
        if self.run_as_user and self.run_as_user not in self.os_users:
            self.os_users = [self.run_as_user, *self.os_users]
        return self


class ProjectUpdate(_In):
    description: str | None = Field(default=None, max_length=10000)
    run_as_user: OsUser | None = None
    os_users: list[OsUser] | None = Field(default=None, max_length=100)


class ProjectOut(BaseModel):
    id: int
    name: str
    description: str
    run_as_user: str | None
    os_users: list[str]
    created_at: Timestamp
    role: str | None = None  # the caller's role on it


class ProjectPage(BaseModel):
    items: list[ProjectOut]
    total: int


class GrantIn(_In):
    role: GrantRole


class GrantOut(BaseModel):
    project: str
    user_id: int
    user: str
    role: str


class GrantPage(BaseModel):
    items: list[GrantOut]
    total: int


class MeOut(BaseModel):
    id: int
    name: str
    role: str
    bootstrap: bool
    projects: list[ProjectRole]
    token_id: int | None = None


class AuditOut(BaseModel):
    id: int
    at: Timestamp
    actor: str
    actor_id: int | None
    action: str
    resource: str
    resource_ids: dict[str, Any]
    project: str | None
    result: str
    status: int
    client: str | None
    method: str
    path: str


class AuditPage(BaseModel):
    items: list[AuditOut]
    total: int
