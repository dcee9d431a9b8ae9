"""Request and response models of /datasources. The password is write-only: a SecretStr on the
way in (never in a repr, an error or a log), only ``has_password`` on the way out."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from api.schemas import Timestamp
from core.validation import Name
from db.models import Datasource

Kind = Literal["POSTGRESQL", "MYSQL"]
_KIND_ALIASES = {"POSTGRES": "POSTGRESQL", "PG": "POSTGRESQL", "MARIADB": "MYSQL"}
_DRIVER_KINDS: dict[str, Kind] = {"postgresql": "POSTGRESQL", "postgres": "POSTGRESQL",
                                  "mysql": "MYSQL", "mariadb": "MYSQL"}  # fmt: skip


def _kind(v: Any) -> Any:
    if isinstance(v, str):
        v = v.strip().upper()
        return _KIND_ALIASES.get(v, v)
    return v


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    kind: Kind | None = None
    host: str | None = Field(default=None, min_length=1, max_length=255)
    port: int | None = Field(default=None, ge=1, le=65535)
    database: str | None = Field(default=None, max_length=255)
    user: str | None = Field(default=None, max_length=255)
    password: SecretStr | None = None
    # A SQLAlchemy/libpq-style URL instead of (or as a base for) the separate fields
    url: SecretStr | None = None
    options: dict[str, str] | None = None
    description: str | None = None

    _norm_kind = field_validator("kind", mode="before")(_kind)

    @model_validator(mode="after")
    def _from_url(self) -> Any:
        if self.url is None:
            return self
        try:
            u = make_url(self.url.get_secret_value())
        except (ArgumentError, ValueError):
            raise ValueError(
                "url: not a database URL (e.g. postgresql://user@host:5432/db)"
            ) from None
        backend = u.get_backend_name()
        kind = _DRIVER_KINDS.get(backend)
        if kind is None:
            raise ValueError(f"url: unsupported database {backend!r} (postgresql or mysql)")
        if self.kind is not None and self.kind != kind:
            raise ValueError(f"url: a {backend} URL does not match kind {self.kind}")
        self.kind = kind
        self.host = self.host or u.host
        self.port = self.port or u.port
        self.database = self.database if self.database is not None else u.database
        self.user = self.user if self.user is not None else u.username
        if self.password is None and u.password:
            self.password = SecretStr(str(u.password))
        if self.options is None and u.query:
            self.options = {k: str(v) for k, v in u.query.items()}
        self.url = None  # consumed: never stored or echoed
        return self


class DatasourceIn(_Fields):
    name: Name

    project: str = Field(default="default", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")

    @model_validator(mode="after")
    def _complete(self) -> DatasourceIn:
        if self.kind is None:
            raise ValueError("kind: required (POSTGRESQL or MYSQL), or give a url")
        if not self.host:
            raise ValueError("host: required (or give a url)")
        return self


class DatasourceUpdate(_Fields):
    """Only the fields given change; the password is kept unless ``password`` is given (null
    removes it)."""

    name: Name | None = None


class DatasourceOut(BaseModel):
    id: int
    name: str
    project: str = "default"
    kind: str
    host: str
    port: int | None
    database: str
    user: str
    has_password: bool
    options: dict[str, str]
    description: str
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def from_row(cls, d: Datasource) -> DatasourceOut:
        return cls(
            id=d.id,
            name=d.name,
            project=d.project,
            kind=d.kind,
            host=d.host,
            port=d.port,
            database=d.database,
            user=d.username,
            has_password=d.password_enc is not None,
            options={str(k): str(v) for k, v in (d.options or {}).items()},
            description=d.description,
            created_at=d.created_at,
            updated_at=d.updated_at,
        )


class DatasourcePage(BaseModel):
    items: list[DatasourceOut]
    total: int
