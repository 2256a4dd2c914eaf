"""What the benchmark reads from /proc: CPU time of a process tree, RSS, open fds, the machine."""
from __future__ import annotations

import os
import platform
import shutil
import threading

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            text = file.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # the name may hold spaces and parentheses


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, found by scanning /proc for their parent id."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (with its reaped children) and of every live descendant."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # Fields 14-17 of stat, counted from 1 with pid and name: utime, stime, cutime, cstime.
    ticks = sum(int(value) for value in fields[11:15])
    return ticks / _TICKS + sum(tree_cpu_seconds(child) for child in children(pid))


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / _TICKS


def rss_kib(pid: int, key: str = "VmRSS") -> int:
    """A size line of /proc/<pid>/status (VmRSS or VmHWM) in KiB; 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as file:
            for line in file:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def open_fds(pid: int) -> int:
    """How many file descriptors ``pid`` has open; 0 once the process is gone."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class RssPeak:
    """Polls a process's VmRSS every 50 ms on a thread and keeps the largest value."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.peak_kib = rss_kib(pid)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="rss-poll", daemon=True)

    def __enter__(self) -> "RssPeak":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, rss_kib(self.pid))

    def _poll(self) -> None:
        """Sample until stopped."""
        while not self._stop.wait(self._interval):
            self.peak_kib = max(self.peak_kib, rss_kib(self.pid))


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def can_pin() -> bool:
    """Pinning needs ``taskset`` and at least two usable cores."""
    return shutil.which("taskset") is not None and len(os.sched_getaffinity(0)) >= 2


def machine_summary(pinned: bool) -> str:
    """One line naming the machine and how the processes were placed."""
    placement = ("pinned: fake upstream + load generator on core 0, server on core 1"
                 if pinned else "unpinned (taskset missing or fewer than 2 cores)")
    return (f"machine: nproc={os.cpu_count()}, cpu={cpu_model()}, "
            f"python={platform.python_version()}; {placement}")
