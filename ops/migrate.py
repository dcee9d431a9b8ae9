"""Runs the Alembic migrations (``alembic upgrade heads``) against a database URL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from core.settings import DbSettings

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def alembic_config(db: str | DbSettings) -> Config:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "alembic"))
    cfg.attributes["url"] = db if isinstance(db, str) else db.url
    cfg.attributes["connect_args"] = {} if isinstance(db, str) else db.connect_args()
    return cfg


def upgrade_head(db: str | DbSettings) -> None:
    """Bring the schema of ``db`` (a URL, or the DB settings with their password file and TLS
    options) to the newest revision."""
    command.upgrade(alembic_config(db), "heads")
