"""Schema and row snapshots for the migration tests (tables, columns, indexes, constraints and
sequences of the public schema; every row of every table as text), and the seed rows each
revision's schema accepts, written in raw SQL against the schema of that revision."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from core.states import TaskState as T
from core.states import WorkflowState as W

SKIP_TABLES = ("alembic_version",)

_COLUMNS = text(
    "SELECT table_name, column_name, data_type, is_nullable, column_default"
    " FROM information_schema.columns WHERE table_schema = 'public'"
    " ORDER BY table_name, ordinal_position"
)
_INDEXES = text(
    "SELECT c.relname, pg_get_indexdef(c.oid), i.indisvalid FROM pg_index i"
    " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = 'public'"
)
_CONSTRAINTS = text(
    "SELECT conname, conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint"
    " WHERE connamespace = 'public'::regnamespace"
)
_SEQUENCES = text("SELECT sequence_name FROM information_schema.sequences")


def schema_objects(c: Connection) -> dict[str, str]:
    """``kind:name`` -> its definition, for everything in the public schema but alembic's table."""
    out: dict[str, str] = {}
    for t, col, typ, nullable, default in c.execute(_COLUMNS):
        if t not in SKIP_TABLES:
            out[f"table:{t}"] = ""
            out[f"column:{t}.{col}"] = f"{typ} nullable={nullable} default={default}"
    for name, definition, valid in c.execute(_INDEXES):
        if not any(s in name for s in SKIP_TABLES):
            out[f"index:{name}"] = f"{definition} valid={valid}"
    for name, table, definition in c.execute(_CONSTRAINTS):
        if table not in SKIP_TABLES:
            out[f"constraint:{name}"] = f"{table} {definition}"
    for (name,) in c.execute(_SEQUENCES):
        out[f"sequence:{name}"] = ""
    return out


def table_columns(c: Connection) -> dict[str, list[str]]:
    """Every table (but alembic's) -> its columns in order."""
    out: dict[str, list[str]] = {}
    for t, col, *_ in c.execute(_COLUMNS):
        if t not in SKIP_TABLES:
            out.setdefault(t, []).append(col)
    return out


def rowsets(c: Connection, columns: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every row of each table, as the text of a row of ``columns`` only, sorted: equal before
    and after a migration iff no row and no value of those columns changed."""
    out: dict[str, list[str]] = {}
    for table, cols in columns.items():
        row = ", ".join(f'"{col}"' for col in cols)
        q = f'SELECT ROW({row})::text FROM "{table}" ORDER BY 1'
        out[table] = list(c.execute(text(q)).scalars())
    return out


def run_sql(c: Connection, statements: list[str]) -> None:
    for statement in statements:
        c.exec_driver_sql(statement)


SPEC = '{"name": "seed", "tasks": [{"name": "a", "type": "SHELL", "command": "echo a"}]}'

# The rows each revision's own objects take, in raw SQL against the schema right after that
# revision; the rows of revision N still insert at every later schema (later revisions only add
# nullable or defaulted columns). Explicit ids where later seeds refer to them.
SEEDS: dict[str, list[str]] = {
    "0001": [
        "INSERT INTO workflow_definition (id, name, description) VALUES (1, 'seed', 'one')",
        f"INSERT INTO workflow_version (workflow_id, version, spec) VALUES (1, 1, '{SPEC}')",
        "INSERT INTO schedule (workflow_id, cron, next_fire_time)"
        " VALUES (1, '0 0 * * *', '2026-11-20T00:00:00Z')",
        "INSERT INTO command (type, workflow_id, version, instance_id, params)"
        " VALUES ('START_PROCESS', 1, 1, 1, '{\"k\": \"v\"}')",
        "INSERT INTO workflow_instance (id, workflow_id, version, state, command_type, owner,"
        f" owner_epoch, submit_time) VALUES (1, 1, 1, '{W.RUNNING}', 'START_PROCESS', 'm1', 42,"
        " '2026-11-20T01:00:00Z')",
        "INSERT INTO task_instance (id, workflow_instance_id, name, type, state, lease_token,"
        f" worker_id, log_path) VALUES (1, 1, 'a', 'SHELL', '{T.RUNNING}', 77, 'w1', '1/1.log')",
        "INSERT INTO alert (kind, title, workflow_instance_id) VALUES ('TASK_FAILURE', 'x', 1)",
    ],
    "0002": [
        "INSERT INTO task_group (name, capacity) VALUES ('tg', 2)",
        "INSERT INTO task_instance (id, workflow_instance_id, name, type, state, task_group,"
        f" reason) VALUES (2, 1, 'sub', 'SUB_PROCESS', '{T.RUNNING}', 'tg', 'waits')",
        "INSERT INTO workflow_instance (id, workflow_id, version, state, command_type, reason,"
        f" parent_task_instance_id) VALUES (2, 1, 1, '{W.FAILURE}', 'START_PROCESS', 'b', 2)",
    ],
    "0003": [
        "INSERT INTO backfill (id, workflow_id, mode, parallelism) VALUES (1, 1, 'PARALLEL', 2)",
        "INSERT INTO backfill_run (backfill_id, seq, schedule_time, instance_id)"
        " VALUES (1, 0, '2026-11-01T00:00:00Z', 2)",
    ],
    "0004": [
        "INSERT INTO datasource (name, kind, host, port, password_enc)"
        " VALUES ('wh', 'POSTGRESQL', 'db.example', 5432, 'enc')",
    ],
    "0005": [],
    "0006": [
        "INSERT INTO task_log_chunk (task_instance_id, seq, first_line, line_count, data)"
        " VALUES (1, 0, 0, 2, convert_to(E'one\\ntwo\\n', 'UTF8'))",
    ],
    "0007": [
        "INSERT INTO task_instance (id, workflow_instance_id, name, type, state, parent_id,"
        f" target) VALUES (3, 1, 'a[h1]', 'SHELL', '{T.SUCCESS}', 1, 'h1')",
    ],
    "0008": [
        "INSERT INTO project (name) VALUES ('p2')",
        "INSERT INTO app_user (id, name, role) VALUES (10, 'alice', 'editor')",
        "INSERT INTO project_grant (project, user_id, role) VALUES ('p2', 10, 'viewer')",
        "INSERT INTO api_token (user_id, name, token_hash) VALUES (10, 'cli', 'h')",
        "INSERT INTO audit_log (actor, action, resource, result, status, method, path)"
        " VALUES ('alice', 'create', 'workflow', 'ok', 201, 'POST', '/api/v1/workflows')",
        "INSERT INTO workflow_definition (id, name, project) VALUES (2, 'p2wf', 'p2')",
    ],
    "0009": [
        "INSERT INTO alert_channel (id, name, kind) VALUES (1, 'hook', 'WEBHOOK')",
        "INSERT INTO alert_group (id, name) VALUES (1, 'ops')",
        "INSERT INTO alert_group_channel (group_id, channel_id) VALUES (1, 1)",
        "INSERT INTO alert (kind, title, alert_group, status) VALUES ('TEST', 't', 'ops', 'WAIT')",
    ],
    "0010": [
        "INSERT INTO workflow_definition (id, name, release_state) VALUES (3, 'off', 'OFFLINE')",
    ],
    "0011": [],
    "0012": [],
}

# (query, expected rows) that hold right after each revision ran on the seeds of the ones
# before: what it documents for the rows that already exist
AFTER: dict[str, list[tuple[str, list[tuple[Any, ...]]]]] = {
    "0005": [("SELECT nextval('node_epoch_seq')", [(78,)])],  # past every epoch handed out
    "0008": [
        ("SELECT DISTINCT project FROM workflow_definition", [("default",)]),
        ("SELECT DISTINCT project FROM datasource", [("default",)]),
        ("SELECT DISTINCT project FROM task_group", [("default",)]),
        ("SELECT name FROM project", [("default",)]),
        ("SELECT name, role, bootstrap FROM app_user", [("admin", "admin", True)]),
    ],
    "0009": [
        (
            "SELECT status, tries, deliveries::text, alert_group, sent_at, last_error,"
            " next_try_at IS NOT NULL FROM alert",
            [("SKIPPED", 0, "{}", None, None, None, True)],
        ),
    ],
    "0010": [("SELECT DISTINCT release_state FROM workflow_definition", [("ONLINE",)])],
}

# What each revision creates (kind:name) and what it removes
NEW: dict[str, set[str]] = {
    "0001": {
        *(
            f"table:{t}"
            for t in (
                "workflow_definition", "workflow_version", "schedule", "command",
                "workflow_instance", "task_instance", "alert",
            )
        ),
        "index:uq_workflow_definition_name_live", "index:ix_wfi_state", "index:ix_wfi_workflow",
        "index:ix_ti_active_state", "index:ix_ti_worker_active", "index:ix_alert_created",
        "index:ix_command_claim_order", "index:ix_schedule_next_fire", "index:ix_wfi_owner_active",
        "constraint:fk_wfi_version", "constraint:uq_task_attempt",
        "constraint:uq_command_schedule_fire", "constraint:uq_workflow_version",
    },
    "0002": {
        "table:task_group", "column:task_instance.task_group", "column:task_instance.reason",
        "column:workflow_instance.reason", "column:workflow_instance.parent_task_instance_id",
        "index:ix_ti_task_group_active", "index:uq_wfi_parent_task",
        "constraint:ck_task_group_capacity",
    },
    "0003": {
        "table:backfill", "table:backfill_run", "index:uq_wfi_schedule_fire",
        "index:ix_backfill_running", "constraint:ck_backfill_parallelism",
    },
    "0004": {"table:datasource", "constraint:ck_datasource_kind"},
    "0005": {"sequence:node_epoch_seq"},
    "0006": {"table:task_log_chunk", "constraint:pk_task_log_chunk"},
    "0007": {"column:task_instance.parent_id", "column:task_instance.target",
             "index:uq_ti_parent_target"},
    "0008": {
        "table:project", "table:app_user", "table:project_grant", "table:api_token",
        "table:audit_log", "index:uq_app_user_bootstrap", "index:ix_audit_log_at",
        *(f"column:{t}.project" for t in ("workflow_definition", "datasource", "task_group")),
        *(f"constraint:fk_{t}_project" for t in ("workflow_definition", "datasource", "task_group")),
    },
    "0009": {
        "table:alert_channel", "table:alert_group", "table:alert_group_channel", "index:ix_alert_due",
        "constraint:ck_alert_channel_kind",
        *(f"column:alert.{c}" for c in ("alert_group", "status", "tries", "next_try_at",
                                        "sent_at", "last_error", "deliveries")),
    },
    "0010": {"column:workflow_definition.release_state",
             "constraint:ck_workflow_definition_release_state"},
    "0011": {"index:ix_wfi_submit_time"},
    "0012": {"index:ix_wfi_end_time", "index:ix_alert_instance", "index:ix_command_instance",
             "index:ix_wfi_state_id"},
}  # fmt: skip
GONE: dict[str, set[str]] = {"0012": {"index:ix_wfi_state"}}
