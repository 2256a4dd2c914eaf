"""Measuring one target at one concurrency, and profiling it, through the load generator."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.fakes.protocols import expected_text

from .hotspots import find_py_spy, record, summarize
from .machine import RssPeak, process_cpu_seconds, tree_cpu_seconds
from .processes import LoadGen
from .report import Row, make_row


class Bench:
    """Runs warm-up and measurement of one target at one K through the load generator."""

    def __init__(self, args: argparse.Namespace, loadgen: LoadGen, fake_pid: int) -> None:
        self.args, self.loadgen, self.fake_pid = args, loadgen, fake_pid

    def job(self, target, requests: list[tuple[str, str]], rounds: int, limit: float) -> dict:
        """A load-generator job against ``target``."""
        return {"port": target.port, "requests": requests, "headers": target.headers,
                "rounds": rounds, "mode": target.mode, "time_limit": limit,
                "expected": expected_text(self.args.tokens)}

    def warm_up(self, target) -> None:
        """A few concurrent requests first; a target that cannot serve them stops the run."""
        answer = self.loadgen.run(self.job(target, target.prepare(self.args.warmup), 1,
                                           self.args.duration_limit), timeout=30)
        if not any(r["status"] == 200 and r["complete"] for r in answer["results"]):
            raise RuntimeError(f"{target.name}: every warm-up request failed: "
                               f"{answer['results'][:2]}")

    def measure(self, target, k: int) -> Row:
        """Warm up, then K concurrent streams once (K=1: ``--sequential`` in a row)."""
        self.warm_up(target)
        width, rounds = (1, self.args.sequential) if k == 1 else (k, 1)
        job = self.job(target, target.prepare(width), rounds, self.args.duration_limit)
        server, fake = tree_cpu_seconds(target.cpu_pid), process_cpu_seconds(self.fake_pid)
        with RssPeak(target.rss_pid) as rss:
            answer = self.loadgen.run(job, timeout=30)
        server = tree_cpu_seconds(target.cpu_pid) - server
        client = process_cpu_seconds(self.fake_pid) - fake + answer["cpu"]
        row = make_row(target.name, k, answer, self.args.tokens, server, rss.peak_kib, client)
        print(f"  {target.name:>15} K={k:<4} {row.streams} streams in {answer['wall']:.1f} s, "
              f"{row.errors} errors, {row.incomplete} incomplete", file=sys.stderr, flush=True)
        return row

    def profile(self, target, k: int, seconds: int, out: Path) -> list[str]:
        """py-spy the target's worker while K-stream rounds run back to back."""
        py_spy = find_py_spy()
        if py_spy is None:
            return ["py-spy not found: `pip install py-spy` into the venv to profile"]
        title = f"py-spy, {target.name} worker, K={k}, {seconds} s (raw: {out}):"
        self.warm_up(target)
        job = self.job(target, target.prepare(k), 10_000, seconds + 2)
        spy = record(py_spy, self.loadgen.placement.client, target.rss_pid, seconds, out)
        self.loadgen.run(job, timeout=30)
        _, errors = spy.communicate(timeout=60)
        if spy.returncode != 0 or not out.exists():
            return [title, f"  py-spy failed: {errors.strip()[-300:]}"]
        return [title] + summarize(out)
