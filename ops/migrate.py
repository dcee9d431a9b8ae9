"""Runs the Alembic migrations (``alembic upgrade heads``) against a database URL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def alembic_config(url: str) -> Config:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "alembic"))
    cfg.attributes["url"] = url
    return cfg


def upgrade_head(url: str) -> None:
    """Bring the schema at ``url`` to the newest revision."""
    command.upgrade(alembic_config(url), "heads")
