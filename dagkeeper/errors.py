"""The SDK's errors (its one home: the SDK imports no server package): one class per kind of API
answer, each carrying the API's code, message and details, plus local usage errors."""

from __future__ import annotations

from typing import Any


class DagkeeperError(Exception):
    """Anything the SDK raises on purpose; ``str()`` is one line fit to show a user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DefinitionError(DagkeeperError, ValueError):
    """A workflow written with the SDK is used wrongly (e.g. a task made outside a workflow)."""


class ApiError(DagkeeperError):
    """An error answer of the REST API: ``{"error": {"code", "message", "details"}}``."""

    status: int = 0

    def __init__(
        self, message: str, *, status: int = 0, code: str = "error", details: Any = None
    ) -> None:
        super().__init__(message)
        self.status = status or type(self).status
        self.code = code
        self.details = details


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class TooLarge(ApiError):
    status = 413


class Invalid(ApiError):
    """422: the server refused a definition or request. ``problems`` are the API's details;
    ``tasks`` the offending task names and ``fields`` the field paths they name."""

    status = 422

    @property
    def problems(self) -> list[dict[str, Any]]:
        d = self.details
        if isinstance(d, dict) and isinstance(d.get("errors"), list):
            d = d["errors"]
        return [p for p in d if isinstance(p, dict)] if isinstance(d, list) else []

    @property
    def tasks(self) -> list[str]:
        out: list[str] = []
        for p in self.problems:
            for name in p.get("tasks") or []:
                if isinstance(name, str) and name not in out:
                    out.append(name)
        return out

    @property
    def fields(self) -> list[str]:
        out: list[str] = []
        for p in self.problems:
            raw = p.get("field", p.get("loc"))
            path = ".".join(str(x) for x in raw) if isinstance(raw, list) else raw
            if isinstance(path, str) and path and path not in out:
                out.append(path)
        return out


class ServerError(ApiError):
    """5xx: the server (or PostgreSQL/ZooKeeper behind it) is not able to answer now."""

    status = 500


class Unreachable(DagkeeperError):
    """The API could not be reached (connection refused, DNS, timeouts) within the deadline."""


class RunTimeout(DagkeeperError, TimeoutError):
    """``Run.wait(timeout=...)`` ran out before the run ended."""


BY_STATUS: dict[int, type[ApiError]] = {
    c.status: c
    for c in (BadRequest, Unauthorized, Forbidden, NotFound, Conflict, TooLarge, Invalid)
}


def from_answer(status: int, body: Any, fallback: str) -> ApiError:
    """The typed error for an error answer (its JSON body, or the raw text as ``fallback``)."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        message = str(err.get("message") or fallback)
        code = str(err.get("code") or "error")
        details = err.get("details")
    else:
        message, code, details = (fallback.strip() or f"HTTP {status}"), "error", None
    cls = BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(message, status=status, code=code, details=details)
