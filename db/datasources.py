"""Datasource rows: queries (take a Session, never commit) and the SQLAlchemy URL of a datasource
built from its fields and its decrypted password. Callers decrypt; nothing here logs a secret."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from db.models import Datasource

KINDS: dict[str, tuple[str, int]] = {
    # kind -> (SQLAlchemy driver name, default port)
    "POSTGRESQL": ("postgresql+psycopg2", 5432),
    "MYSQL": ("mysql+pymysql", 3306),
}
NAME_INDEX = "datasource_name_key"


@dataclass(frozen=True)
class ConnectionInfo:
    """What a worker needs to connect; ``repr`` never shows the password."""

    name: str
    kind: str
    host: str
    port: int | None
    database: str
    username: str
    password: str | None = field(default=None, repr=False)
    options: dict[str, Any] = field(default_factory=dict)

    def url(self) -> URL:
        driver, default_port = KINDS[self.kind]
        query = {str(k): str(v) for k, v in self.options.items()}
        return URL.create(
            driver,
            username=self.username or None,
            password=self.password or None,
            host=self.host,
            port=self.port or default_port,
            database=self.database or None,
            query=query,
        )

    def safe_url(self) -> str:
        return self.url().render_as_string(hide_password=True)

    def as_request(self) -> dict[str, Any]:
        """A JSON-ready copy for a runner process (with the password: hand it over privately)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "username": self.username,
            "password": self.password,
            "options": self.options,
        }

    @classmethod
    def from_request(cls, d: dict[str, Any]) -> ConnectionInfo:
        return cls(
            name=str(d["name"]),
            kind=str(d["kind"]),
            host=str(d["host"]),
            port=d.get("port"),
            database=str(d.get("database") or ""),
            username=str(d.get("username") or ""),
            password=d.get("password"),
            options=dict(d.get("options") or {}),
        )


def get(s: Session, datasource_id: int) -> Datasource | None:
    return s.get(Datasource, datasource_id)


def get_by_name(s: Session, name: str) -> Datasource | None:
    return s.scalars(select(Datasource).where(Datasource.name == name)).one_or_none()


def list_page(
    s: Session,
    limit: int,
    offset: int,
    kind: str | None = None,
    projects: list[str] | None = None,
) -> tuple[list[Datasource], int]:
    """Datasources by id; ``projects`` (None = all) limits them to those projects'."""
    q = select(Datasource)
    count = select(func.count()).select_from(Datasource)
    if projects is not None:
        q = q.where(Datasource.project.in_(projects))
        count = count.where(Datasource.project.in_(projects))
    if kind:
        q = q.where(Datasource.kind == kind)
        count = count.where(Datasource.kind == kind)
    items = list(s.scalars(q.order_by(Datasource.id).limit(limit).offset(offset)))
    return items, int(s.scalar(count) or 0)


def delete(s: Session, datasource_id: int) -> bool:
    row = s.get(Datasource, datasource_id)
    if row is None:
        return False
    s.delete(row)
    return True


def connection_info(row: Datasource, password: str | None) -> ConnectionInfo:
    return ConnectionInfo(
        name=row.name,
        kind=row.kind,
        host=row.host,
        port=row.port,
        database=row.database,
        username=row.username,
        password=password,
        options=dict(row.options or {}),
    )
