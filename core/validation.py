"""The input rules of dagkeeper in one place (pure): what a stored string, number, time, name,
priority and parameter may be, the walk over a JSON document that finds what PostgreSQL or the
master could not handle, and "did you mean" suggestions for unknown fields."""

from __future__ import annotations

import difflib
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator

from core.states import Priority

MAX_INT = 2**63 - 1  # a PostgreSQL bigint
MAX_SECONDS = 366 * 86400  # longest duration a timeout, interval or delay may name
MAX_DEPTH = 64  # deepest nesting of a JSON document
MAX_OFFSET = timedelta(hours=15, minutes=59)  # PostgreSQL refuses a larger UTC offset
# a stored instant stays a day away from the ends of Python's years 1..9999, so that its local
# time in any zone (and "the day before", as system.biz.date) exists
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, 23, 59, 59, tzinfo=UTC)
NAME_MAX = 200
NAME_RULE = (
    f"1 to {NAME_MAX} characters: letters (of any script), digits, '_', '.' and '-', "
    "starting with a letter, a digit or '_'"
)
GROUP_PATTERN = r"^[A-Za-z0-9_.\-]{1,100}$"
GROUP_RULE = "1 to 100 characters: ASCII letters, digits, '_', '.' and '-'"
PARAM_NAME_RULE = (
    f"1 to {NAME_MAX} characters without '=', spaces or control characters "
    "(a parameter is also an environment variable)"
)
PRIORITIES = ", ".join(p.name for p in Priority)
_ISO_START = re.compile(r"^\s*[+-]?\d{4,}-\d{2}")


@dataclass(frozen=True)
class Problem:
    """One refused value: where it is (``loc``, field names and list indexes) and why."""

    loc: tuple[str | int, ...]
    message: str
    kind: str

    def as_dict(self, prefix: tuple[str | int, ...] = ()) -> dict[str, Any]:
        loc = [*prefix, *self.loc]
        return {"loc": [str(p) for p in loc], "message": self.message, "type": self.kind}


# -- JSON documents --------------------------------------------------------------------------


@dataclass(frozen=True)
class BadNumber:
    """A JSON number dagkeeper refuses (non-finite, or an integer beyond 64 bits), as written."""

    text: str


def _parse_float(text: str) -> float | BadNumber:
    value = float(text)
    return value if math.isfinite(value) else BadNumber(text)


def _parse_int(text: str) -> int | BadNumber:
    if len(text) > 20:
        return BadNumber(text[:24] + "...")
    value = int(text)
    return value if -MAX_INT - 1 <= value <= MAX_INT else BadNumber(text)


def load_json(raw: bytes | str) -> Any:
    """Parse a JSON document; numbers dagkeeper refuses (``Infinity``, ``NaN``, ``1e400``, an
    integer beyond 64 bits) come back as ``BadNumber`` for ``problems`` to report. Raises
    ValueError (not JSON) or RecursionError (nested beyond Python's limit)."""
    return json.loads(raw, parse_float=_parse_float, parse_int=_parse_int, parse_constant=BadNumber)


def text_problem(value: str) -> str | None:
    """Why a string cannot be stored (a NUL, an unpaired surrogate), or None."""
    if "\x00" in value:
        return "contains a NUL character (\\u0000), which cannot be stored"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate (\\ud800-\\udfff), which is not valid Unicode"
    return None


def problems(document: Any, limit: int = 20) -> list[Problem]:
    """Every value of a parsed JSON document that cannot be stored, at most ``limit``: NULs and
    unpaired surrogates in strings and keys, refused numbers, nesting deeper than MAX_DEPTH."""
    found: list[Problem] = []
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), document)]
    while stack and len(found) < limit:
        loc, value = stack.pop()
        if isinstance(value, str):
            if (why := text_problem(value)) is not None:
                found.append(Problem(loc, why, "text"))
        elif isinstance(value, BadNumber):
            found.append(Problem(loc, f"{value.text} is not a number dagkeeper stores "
                                      f"(finite, integers within ±{MAX_INT})", "number"))  # fmt: skip
        elif isinstance(value, dict | list):
            if len(loc) >= MAX_DEPTH:
                found.append(Problem(loc, f"nested deeper than {MAX_DEPTH} levels", "depth"))
                continue
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in reversed(list(items)):
                if isinstance(key, str) and (why := text_problem(key)) is not None:
                    found.append(Problem((*loc, _printable(key)), f"the key {why}", "text"))
                    continue
                stack.append(((*loc, key), item))
    return found


def _printable(key: str) -> str:
    return (
        key.encode("utf-8", "backslashreplace")
        .decode("ascii", "backslashreplace")
        .replace("\x00", "\\u0000")
    )


# -- unknown fields --------------------------------------------------------------------------


def suggest(name: str, known: Iterable[str]) -> str | None:
    """The known field ``name`` most likely meant (``retires`` -> ``retries``), or None."""
    options = sorted(set(known))
    lowered = {o.lower(): o for o in options}
    if name.lower() in lowered:
        return lowered[name.lower()]
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.7)
    return close[0] if close else None


def unknown_field_message(name: str, known: Iterable[str]) -> str:
    hint = suggest(name, known)
    return f"unknown field '{name}'" + (f"; did you mean '{hint}'?" if hint else "")


# -- names, priorities, parameters -----------------------------------------------------------


def _name_char(c: str) -> bool:
    return c.isalnum() or c in "_.-" or unicodedata.category(c).startswith("M")


def check_name(value: Any) -> str:
    """A workflow, task or datasource name (NFC-normalized) or ValueError saying the rule."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string of {NAME_RULE}")
    v = unicodedata.normalize("NFC", value)
    if not (1 <= len(v) <= NAME_MAX and (v[0].isalnum() or v[0] == "_")):
        raise ValueError(f"must be {NAME_RULE}")
    bad = sorted({c for c in v if not _name_char(c)})
    if bad:
        shown = ", ".join(repr(c) for c in bad[:5])
        raise ValueError(f"{shown} not allowed: a name is {NAME_RULE}")
    return v


def parse_priority(value: Any) -> str:
    """A priority name (any case) or its digit 0..4 -> the upper-case name; ValueError else."""
    if isinstance(value, Priority):
        return value.name
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 4:
        return Priority(value).name
    if isinstance(value, str) and value.strip().upper() in Priority.__members__:
        return value.strip().upper()
    raise ValueError(f"must be one of {PRIORITIES} (got {_short(value)})")


def param_value(value: Any) -> str:
    """The one rule for workflow, task and run parameters: a string, a number or a boolean,
    stored as text (``3`` -> "3", ``true`` -> "true")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    raise ValueError(f"must be a string, a number or a boolean (got {_short(value)})")


def param_map(value: Any) -> dict[str, str]:
    """Parameters as a name -> text map (see ``param_value``); ValueError naming the parameter."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError("must be an object of name -> value")
    out: dict[str, str] = {}
    for name, v in value.items():
        if (
            not isinstance(name, str)
            or not (1 <= len(name) <= NAME_MAX)
            or any(c == "=" or c.isspace() or unicodedata.category(c) == "Cc" for c in name)
        ):
            raise ValueError(f"parameter name {_short(name)}: must be {PARAM_NAME_RULE}")
        try:
            out[name] = param_value(v)
        except ValueError as exc:
            raise ValueError(f"parameter '{name}': {exc}") from None
    return out


def oversized_params(params: Mapping[str, str], limit: int) -> list[str]:
    """Names of parameters whose value is longer than ``limit`` bytes (UTF-8)."""
    return [k for k, v in params.items() if len(v) > limit // 4 and len(v.encode()) > limit]


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- times and durations ---------------------------------------------------------------------


def only_iso_text(value: Any) -> Any:
    """A date-time must be written as ISO 8601 text (a bare number is not a date)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_START.match(value):
        return value
    raise ValueError(
        f"must be an ISO 8601 date-time such as 2026-01-31T00:00:00Z (got {_short(value)})"
    )


def _utc(value: datetime) -> datetime | None:
    """``value`` in UTC (a time without an offset read as UTC); None past Python's years."""
    offset = value.utcoffset()
    if offset is not None and abs(offset) > MAX_OFFSET:
        raise ValueError(
            f"the UTC offset {_offset(offset)} is beyond what PostgreSQL stores (at most ±15:59)"
        )
    try:
        return value.astimezone(UTC) if offset is not None else value.replace(tzinfo=UTC)
    except OverflowError:
        return None


def check_instant(value: datetime) -> datetime:
    """A time PostgreSQL can store: a UTC offset within ±15:59, and a UTC time that exists
    (a caller with a narrower range, as a schedule's start, checks it itself)."""
    if _utc(value) is None:
        raise ValueError("must lie between 0001-01-01 and 9999-12-31 (UTC)")
    return value


def check_moment(value: datetime) -> datetime:
    """An instant PostgreSQL can store and Python can shift to any zone: a UTC offset within
    ±15:59 and a UTC time within 0001-01-02 .. 9999-12-30 (a time without an offset is
    checked as if it were UTC)."""
    utc = _utc(value)
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise ValueError("must lie between 0001-01-02 and 9999-12-30 (UTC)")
    return value


def _offset(offset: timedelta) -> str:
    sign = "-" if offset < timedelta(0) else "+"
    minutes = int(abs(offset).total_seconds() // 60)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def check_seconds(value: float) -> float:
    if not (math.isfinite(value) and value <= MAX_SECONDS):
        raise ValueError(f"must be at most {MAX_SECONDS} seconds (366 days)")
    return value


# Pydantic types used by every request model and the workflow spec
Moment = Annotated[datetime, BeforeValidator(only_iso_text), AfterValidator(check_moment)]
Instant = Annotated[datetime, BeforeValidator(only_iso_text), AfterValidator(check_instant)]
Seconds = Annotated[float, AfterValidator(check_seconds)]
Name = Annotated[str, BeforeValidator(check_name)]
PriorityName = Annotated[
    Literal["HIGHEST", "HIGH", "MEDIUM", "LOW", "LOWEST"], BeforeValidator(parse_priority)
]
ParamMap = Annotated[dict[str, str], BeforeValidator(param_map)]
