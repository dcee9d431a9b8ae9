"""The output protocol every task type shares: ``${setValue(key=value)}`` lines in an attempt's
output become its outputs; the collector splits the stream into lines and gathers them."""

from __future__ import annotations

import re

SET_VALUE_MARK = b"${setValue("
_SET_VALUE_RE = re.compile(r"\$\{setValue\(\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*=(.*?)\)\}")
MAX_OUTPUT_KEYS = 1000
MAX_OUTPUT_VALUE = 65536
MAX_LINE = 1 << 20  # a longer line without a newline is written out in pieces


def parse_set_values(line: str) -> dict[str, str]:
    """Every ``${setValue(key=value)}`` on one line; a later key wins."""
    return {m.group(1): m.group(2).strip() for m in _SET_VALUE_RE.finditer(line)}


class OutputCollector:
    """Splits a byte stream into lines and collects the ``setValue`` outputs among them."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.dropped = 0
        self._tail = b""

    def feed(self, chunk: bytes) -> bytes:
        """Take a chunk; return the complete lines in it (to write to the log)."""
        data = self._tail + chunk
        cut = data.rfind(b"\n") + 1
        self._tail = data[cut:]
        complete = data[:cut]
        if len(self._tail) > MAX_LINE:
            complete, self._tail = data, b""
        if SET_VALUE_MARK in complete:
            for line in complete.split(b"\n"):
                if SET_VALUE_MARK in line:
                    self._collect(line)
        return complete

    def flush(self) -> bytes:
        """At end of stream: the last line if it had no newline."""
        tail, self._tail = self._tail, b""
        if SET_VALUE_MARK in tail:
            self._collect(tail)
        return tail

    def _collect(self, line: bytes) -> None:
        for key, value in parse_set_values(line.decode("utf-8", "replace")).items():
            if len(value) > MAX_OUTPUT_VALUE or (
                key not in self.values and len(self.values) >= MAX_OUTPUT_KEYS
            ):
                self.dropped += 1
                continue
            self.values[key] = value
