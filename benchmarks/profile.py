"""Optional sampling profiles of the daemons with py-spy (``--profile DIR``): raw collapsed stacks
per workload and process (samples of the thread holding the GIL), and a summary of the top costs
(self time by function and by package, inclusive time by function)."""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.util import progress

RATE = 200  # samples per second
_FRAME = re.compile(r"^(?P<fn>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.is_file() else shutil.which("py-spy")


class Profiler:
    """py-spy ``record`` on a set of pids until ``stop()``."""

    def __init__(self, out_dir: Path, label: str, pids: dict[str, int]) -> None:
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed: pip install py-spy")
        out_dir.mkdir(parents=True, exist_ok=True)
        self.files: dict[str, Path] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for name, pid in pids.items():
            path = out_dir / f"{label}-{name}.txt"
            self.files[name] = path
            argv = [exe, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw"]
            # --gil: only the thread holding the GIL is sampled, i.e. Python code on a CPU (a
            # thread waiting in select() or libpq would otherwise often count as busy)
            argv += ["--gil", "--nonblocking", "--output", str(path)]
            log = open(out_dir / f"{label}-{name}.py-spy.log", "wb")  # noqa: SIM115
            self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
            log.close()

    def stop(self) -> dict[str, Any]:
        for p in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGINT)
        out: dict[str, Any] = {}
        for name, p in self.procs.items():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            path = self.files[name]
            if path.is_file():
                out[name] = summarize(path)
                out[name]["raw"] = str(path)
            else:
                out[name] = {"error": f"py-spy wrote no {path} (exit {p.returncode})"}
        return out


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            return path.split("/", 1)[1] if marker.startswith("/lib") and "/" in path else path
    for top in ("master/", "worker/", "core/", "coord/", "db/", "ops/", "api/", "dagkeeper/"):
        i = path.find("/" + top)
        if i >= 0:
            return path[i + 1 :]
    return path


def _parse(frame: str) -> tuple[str, str]:
    """(``function (file)``, package) of a py-spy frame ``function (path:line)``."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip(), "?"
    file = _short(m.group("file"))
    pkg = file.split("/", 1)[0] if "/" in file else file.removesuffix(".py")
    return f"{m.group('fn')} ({file})", pkg


def summarize(raw: Path, top: int = 15) -> dict[str, Any]:
    """Top self and inclusive costs from py-spy's collapsed stacks (percent of samples);
    ``gil_s`` is the time some thread held the GIL, about the process's Python CPU time."""
    self_fn: Counter[str] = Counter()
    self_pkg: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_parse(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += n
        fn, pkg = frames[-1]
        self_fn[fn] += n
        self_pkg[pkg] += n
        for f in {f for f, _ in frames}:
            incl[f] += n

    def pct(c: Counter[str]) -> list[list[Any]]:
        return [[k, round(100.0 * v / total, 1)] for k, v in c.most_common(top)] if total else []

    return {
        "samples": total,
        "gil_s": total / RATE,
        "self_by_package": pct(self_pkg),
        "self_by_function": pct(self_fn),
        "inclusive_by_function": pct(incl),
    }


def start(out_dir: Path | None, label: str, pids: dict[str, int]) -> Profiler | None:
    if out_dir is None:
        return None
    progress(f"profile: py-spy on {', '.join(f'{k} {v}' for k, v in pids.items())} ({label})")
    return Profiler(out_dir, label, pids)
