"""Task logs, the parts the worker and the API share: the log token, the confinement of a log path
to the log directory, windows of lines from a file or from shipped chunks, and how the shipper cuts
a log into chunks (whole lines, at most ``chunk_bytes`` each)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from core import secret_files
from core.errors import LogPathRefused
from core.settings import Settings

TOKEN_FILE = "log-token"  # noqa: S105 - a file name, not a secret


def resolve_token(settings: Settings) -> str:
    """``settings.logs.token`` if set, else the content of ``<data_dir>/log-token`` (created 0600
    with a random token on first use). The API and every worker's log server must agree."""
    if settings.logs.token:
        return settings.logs.token
    return secret_files.read_or_create(
        settings.data_path / TOKEN_FILE, lambda: secrets.token_urlsafe(32), "log token"
    )


def confined(log_root: Path, log_path: str | Path) -> Path:
    """``log_path`` (absolute, or relative to ``log_root``) resolved with symlinks followed; raises
    LogPathRefused unless the result lies strictly inside ``log_root``."""
    root = log_root.resolve()
    path = (root / log_path).resolve()
    if path == root or not path.is_relative_to(root):
        raise LogPathRefused(f"{log_path!s} is outside the log directory {root}")
    return path


def read_window(path: Path, skip: int, limit: int, final: bool) -> tuple[list[str], bool]:
    """Lines ``skip`` .. ``skip+limit`` of the file and whether its end was reached. Unless
    ``final``, a last line without its newline is still being written and is left out."""
    lines: list[str] = []
    with path.open("rb") as fh:
        for i, raw in enumerate(fh):
            if i < skip:
                continue
            if len(lines) >= limit:
                return lines, False
            if not final and not raw.endswith(b"\n"):
                return lines, False
            lines.append(decode_line(raw))
    return lines, True


def decode_line(raw: bytes) -> str:
    return raw.rstrip(b"\r\n").decode("utf-8", "replace")


def cut_chunks(data: bytes, chunk_bytes: int, final: bool) -> list[bytes]:
    """Pieces of ``data`` of at most ``chunk_bytes``, each ending at a newline; a line longer than
    ``chunk_bytes`` is cut. Unless ``final``, a last line without its newline is left for later
    (its bytes are not in any piece)."""
    out: list[bytes] = []
    pos, size = 0, len(data)
    while pos < size:
        end = min(pos + chunk_bytes, size)
        if end < size or not final:
            nl = data.rfind(b"\n", pos, end)
            if nl >= 0:
                end = nl + 1
            elif end - pos < chunk_bytes:
                break  # a line still being written
        out.append(data[pos:end])
        pos = end
    return out


@dataclass(frozen=True)
class Chunk:
    """One shipped piece of a log (a ``task_log_chunk`` row)."""

    seq: int
    first_line: int
    line_count: int
    data: bytes


def window_from_chunks(
    chunks: Iterable[Chunk], skip: int, limit: int, final: bool
) -> tuple[list[str], bool]:
    """Lines ``skip`` .. ``skip+limit`` out of consecutive chunks (in ``seq`` order, starting with
    the first one that holds line ``skip``) and whether the chunks ran out. Unless ``final``, a
    last line without its newline is left out."""
    lines: list[str] = []
    line_no: int | None = None
    partial = b""
    for c in chunks:
        if line_no is None:
            line_no = c.first_line
        parts = (partial + c.data).split(b"\n")
        partial = parts.pop()  # after the last newline ('' when the chunk ends with one)
        for raw in parts:
            if line_no >= skip:
                if len(lines) >= limit:
                    return lines, False
                lines.append(decode_line(raw))
            line_no += 1
    if final and partial and (line_no or 0) >= skip:
        if len(lines) >= limit:
            return lines, False
        lines.append(decode_line(partial))
    return lines, True
