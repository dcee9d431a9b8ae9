"""Pure parts of task logs: cutting a log into whole-line chunks, reading a window of lines back
from any run of chunks, the confinement of log paths, and the Spark application-id parser."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from core.tasklogs import Chunk, LogPathRefused, confined, cut_chunks, window_from_chunks
from worker.task_types.spark import APP_ID_KEY, SparkOutput


def test_cut_chunks_whole_lines_and_long_lines() -> None:
    assert cut_chunks(b"a\nbb\nccc\n", 4, final=False) == [b"a\n", b"bb\n", b"ccc\n"]
    assert cut_chunks(b"a\nbb\npartial", 100, final=False) == [b"a\nbb\n"]
    assert cut_chunks(b"a\nbb\npartial", 100, final=True) == [b"a\nbb\npartial"]
    assert cut_chunks(b"x" * 10 + b"\n", 4, final=False) == [b"xxxx", b"xxxx", b"xx\n"]
    assert cut_chunks(b"xyz", 4, final=False) == []  # still being written
    assert cut_chunks(b"", 4, final=True) == []


def _ship(data: bytes, chunk: int, cuts: list[int]) -> list[Chunk]:
    """Ship ``data`` as the shipper does: the file grows to each of ``cuts``, then the end."""
    out: list[Chunk] = []
    offset = lines = 0
    for size in [*cuts, len(data)]:
        final = size == len(data)
        for piece in cut_chunks(data[offset:size], chunk, final):
            out.append(Chunk(len(out), lines, piece.count(b"\n"), piece))
            offset += len(piece)
            lines += piece.count(b"\n")
    assert b"".join(c.data for c in out) == data
    return out


@pytest.mark.parametrize("seed", range(20))
def test_window_from_chunks_matches_the_file(seed: int) -> None:
    rnd = random.Random(seed)
    text_lines = ["x" * rnd.choice([0, 1, 5, 30, 90]) + str(i) for i in range(rnd.randint(0, 60))]
    data = "\n".join(text_lines).encode() + (b"\n" if rnd.random() < 0.5 else b"")
    chunks = _ship(data, rnd.choice([16, 40, 1024]), sorted(rnd.sample(range(len(data) + 1), 3)))
    expected = data.decode().split("\n")
    if expected and expected[-1] == "":
        expected.pop()
    for skip in range(len(expected) + 2):
        for limit in (1, 3, 1000):
            # as the API does: only the chunks from the one holding line ``skip`` on
            picked = [c for c in chunks if c.first_line + c.line_count >= skip]
            lines, at_end = window_from_chunks(picked, skip, limit, final=True)
            assert lines == expected[skip : skip + limit], (skip, limit)
            assert at_end == (skip + limit >= len(expected))


def test_window_leaves_out_a_partial_last_line_unless_final() -> None:
    chunks = [Chunk(0, 0, 1, b"one\ntw"), Chunk(1, 1, 0, b"o")]
    assert window_from_chunks(chunks, 0, 10, final=False) == (["one"], True)
    assert window_from_chunks(chunks, 0, 10, final=True) == (["one", "two"], True)
    assert window_from_chunks(chunks, 1, 10, final=True) == (["two"], True)


def test_confined_refuses_escapes(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    (root / "1" / "2").mkdir(parents=True)
    inside = root / "1" / "2" / "3.log"
    inside.write_text("ok\n")
    outside = tmp_path / "secret"
    outside.write_text("no\n")
    assert confined(root, inside) == inside.resolve()
    assert confined(root, "1/2/3.log") == inside.resolve()
    os.symlink(outside, root / "1" / "2" / "4.log")
    for bad in ("../secret", str(outside), "/etc/passwd", "1/../../secret", "1/2/4.log", ".", ""):
        with pytest.raises(LogPathRefused):
            confined(root, bad)


def test_spark_application_ids_are_recorded() -> None:
    for line, app in [
        (b"INFO Client: Submitted application application_1700000000000_0042\n",
         "application_1700000000000_0042"),
        (b"Connected to Spark cluster with app ID app-20261123151100-0007\n",
         "app-20261123151100-0007"),
        (b"Logging events to file:/x/eventlog_v2_local-1795446710102/events_1_local-1795446710102"
         b".zstd\n", "local-1795446710102"),
    ]:  # fmt: skip
        out = SparkOutput()
        assert out.feed(b"noise local-12 app-1\n" + line[:20]) == b"noise local-12 app-1\n"
        out.feed(line[20:] + b"later application_1_2\n")
        assert out.values == {APP_ID_KEY: app}
