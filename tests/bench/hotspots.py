"""Profiling a server worker under load with py-spy, and naming its hottest functions.

py-spy is a profiling tool only, never a project dependency: install it by hand
(``.venv/bin/pip install py-spy``); without it the profile step says so and is skipped.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.e2e.server import ROOT

_PREFIX = re.compile(r"^.*/(?:site-packages|lib/python3\.\d+)/")


def find_py_spy() -> str | None:
    """py-spy on PATH or next to this interpreter."""
    beside = Path(sys.executable).with_name("py-spy")
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def record(py_spy: str, prefix: list[str], pid: int, seconds: int, out: Path) -> subprocess.Popen:
    """Start ``py-spy record --format raw`` on ``pid`` (placed with ``prefix``, off the server's
    core); the caller waits for it."""
    command = prefix + [py_spy, "record", "--format", "raw", "-o", str(out), "-p", str(pid),
                        "-d", str(seconds), "-r", "200"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _frame_name(frame: str) -> str:
    """``function (module path)``: py-spy's ``function (/full/path.py:123)`` made short."""
    name, _, location = frame.partition(" (")
    path = _PREFIX.sub("", location.rsplit(":", 1)[0])
    return f"{name} ({path.removeprefix(str(ROOT) + '/')})"


def summarize(raw: Path, top: int = 12) -> list[str]:
    """Top functions by own and by inclusive samples, from py-spy's collapsed stacks.

    Stacks of gevent's threadpool threads are dropped: they wait on a native lock (the DNS
    resolver's idle workers) and py-spy counts that as busy. Frames on more than 90% of the
    remaining stacks (gunicorn's and gevent's request scaffolding) are left out of the
    inclusive list, which then shows where the request time goes.
    """
    own, inclusive, total = Counter(), Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit() or "gevent/threadpool.py" in stack:
            continue
        frames = [_frame_name(frame) for frame in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    if not total:
        return ["  (no samples)"]
    lines = [f"  {total} samples of the worker's main thread; own time:"]
    lines += [f"    {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    lines.append("  inclusive time:")
    shown = [(name, n) for name, n in inclusive.most_common() if n / total <= 0.9]
    lines += [f"    {n / total:6.1%}  {name}" for name, n in shown[:top * 2]]
    return lines
