"""Datasource rows: queries (take a Session, never commit) and the SQLAlchemy URL of a datasource
built from its fields and its decrypted password. Callers decrypt; nothing here logs a secret."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from core.errors import Conflict
from core.task_fields import DATASOURCE_TYPES
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


def used_by(s: Session, name: str) -> list[tuple[int, str]]:
    """(id, name) of the live workflows whose latest version has a SQL or PROCEDURE task naming
    the datasource ``name``."""
    rows = s.execute(
        text(
            "SELECT d.id, d.name FROM workflow_definition d JOIN workflow_version v"
            " ON v.workflow_id = d.id AND v.version = d.latest_version"
            " WHERE NOT d.deleted AND EXISTS (SELECT 1 FROM jsonb_array_elements(v.spec->'tasks') t"
            " WHERE t->>'datasource' = :name AND t->>'type' = ANY(:types)) ORDER BY d.id"
        ),
        {"name": name, "types": sorted(DATASOURCE_TYPES)},
    ).all()
    return [(int(r[0]), str(r[1])) for r in rows]


def refuse_if_used(s: Session, row: Datasource, what: str) -> None:
    """Conflict naming the live workflows that use ``row`` (a delete or rename would break them)."""
    users = used_by(s, row.name)
    if users:
        shown = ", ".join(f"{n!r} (id {i})" for i, n in users[:10])
        more = f" and {len(users) - 10} more" if len(users) > 10 else ""
        raise Conflict(
            f"cannot {what} datasource {row.name!r}: workflow(s) {shown}{more} use it;"
            " change their SQL/PROCEDURE tasks first",
            {"datasource": row.name, "workflows": [{"id": i, "name": n} for i, n in users]},
        )


def list_page(
    s: Session,
    limit: int,
    offset: int,
    kind: str | None = None,
    projects: list[str] | None = None,
    name: str | None = None,
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
    if name is not None:
        q = q.where(Datasource.name == name)
        count = count.where(Datasource.name == name)
    items = list(s.scalars(q.order_by(Datasource.id).limit(limit).offset(offset)))
    return items, int(s.scalar(count) or 0)


def delete(s: Session, datasource_id: int) -> bool:
    """Delete the datasource; False if there is none, Conflict while live workflows use it."""
    row = s.get(Datasource, datasource_id, with_for_update=True)
    if row is None:
        return False
    refuse_if_used(s, row, "delete")
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
