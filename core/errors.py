"""Every error class dagkeeper raises on purpose; the API maps them to HTTP answers."""

from __future__ import annotations

from typing import Any


class DagkeeperError(Exception):
    """Base class; ``code`` is the machine-readable error code of the REST contract."""

    code = "error"
    http_status = 400

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ValidationError(DagkeeperError):
    """A workflow spec, parameter or request is invalid; ``details`` lists the problems."""

    code = "invalid"
    http_status = 422


class NotFound(DagkeeperError):
    code = "not_found"
    http_status = 404


class Conflict(DagkeeperError):
    """The request is valid but the current state does not allow it (e.g. illegal transition)."""

    code = "conflict"
    http_status = 409


class Unauthorized(DagkeeperError):
    code = "unauthorized"
    http_status = 401


class TooManyRequests(DagkeeperError):
    """Too many failed authentications from one client address; ``details.retry_after_s``."""

    code = "too_many_requests"
    http_status = 429


class ConfigError(DagkeeperError):
    """Settings are inconsistent or a required program is missing."""

    code = "config"


class CoordinationUnavailable(DagkeeperError):
    """ZooKeeper cannot be reached; the node enters its safe mode."""

    code = "zookeeper_unavailable"
    http_status = 503


class DatabaseUnavailable(DagkeeperError):
    """PostgreSQL cannot be reached (or dropped the connection); the node enters its safe mode."""

    code = "database_unavailable"
    http_status = 503


class Forbidden(DagkeeperError):
    """Authenticated, but the request reaches outside what it may touch (e.g. a log path)."""

    code = "forbidden"
    http_status = 403


class UnknownTaskType(DagkeeperError, LookupError):
    """No implementation is registered (or loadable) for a task type on this node."""

    code = "unknown_task_type"


class LogRequestError(DagkeeperError):
    """A request to a worker's log server that cannot be served; ``http_status`` says why (400 a
    bad parameter, 401 no valid log token, 403 a log outside the log dir, 404 no such log)."""

    code = "log_request"

    def __init__(self, http_status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = int(http_status)


class ExpressionError(DagkeeperError, ValueError):
    """A SWITCH expression that cannot be parsed or evaluated; the message says why."""

    code = "invalid_expression"
    http_status = 422


class SecretError(ConfigError):
    """A stored secret cannot be decrypted with this key (another key, or corrupted)."""


class LogPathRefused(Forbidden):
    """A log path that resolves outside the log directory (``..``, absolute, a symlink)."""


class ChildDied(DagkeeperError):
    """A daemon of ``dagkeeper standalone`` exited while it should have been running."""

    code = "child_died"
    http_status = 500


class ChannelError(DagkeeperError):
    """An alert channel could not deliver (SMTP refused, webhook answered non-2xx, no route);
    the message says why and the sender retries the alert with backoff."""

    code = "channel"
    http_status = 502
