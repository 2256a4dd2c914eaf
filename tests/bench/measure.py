"""Measuring one target at one concurrency, and profiling it, through the load generator."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.fakes.protocols import expected_text

from .hotspots import find_py_spy, record, summarize
from .machine import RssPeak, process_cpu_seconds, tree_cpu_seconds
from .processes import LoadGen
from .report import Row, make_row


@dataclass
class Round:
    """One measured round: the load generator's results and what the processes spent."""

    results: list[dict]
    wall: float
    server_cpu: float     # CPU seconds of the server's process tree
    client_cpu: float     # CPU seconds of the fake upstream and the load generator
    rss_kib: int          # peak RSS of the worker (of the fake for "direct")
    unstarted: int = 0    # resume rounds: POSTs that sent no text part before being dropped


class Bench:
    """Runs warm-ups and measured rounds of the targets through the load generator."""

    def __init__(self, args: argparse.Namespace, loadgen: LoadGen, fake_pid: int) -> None:
        self.args, self.loadgen, self.fake_pid = args, loadgen, fake_pid

    def job(self, target, requests: list[tuple[str, str]], rounds: int, limit: float) -> dict:
        """A load-generator job against ``target``."""
        return {"port": target.port, "requests": requests, "headers": target.headers,
                "rounds": rounds, "mode": target.mode, "time_limit": limit,
                "expected": expected_text(self.args.tokens)}

    def warm_up(self, target, k: int) -> None:
        """A round at the coming K first (pools, greenlets and memory at their working size,
        as in a server that has run a while; K=1: ``--warmup`` requests at once); a target
        that cannot serve it stops the run."""
        width = self.args.warmup if k == 1 else k
        answer = self.loadgen.run(self.job(target, target.prepare(width), 1,
                                           self.args.duration_limit), timeout=30)
        if not any(r["status"] == 200 and r["complete"] for r in answer["results"]):
            raise RuntimeError(f"{target.name}: every warm-up request failed: "
                               f"{answer['results'][:2]}")

    def measure_round(self, target, k: int) -> Round:
        """K concurrent streams once (K=1: ``--sequential`` in a row), with the CPU spent."""
        width, rounds = (1, self.args.sequential) if k == 1 else (k, 1)
        requests = target.prepare(width)
        job = self.job(target, requests, rounds, self.args.duration_limit)
        if k == 1:
            # Unmeasured: after the other targets' rounds the worker has idled for a while,
            # and the first request it serves then is a millisecond or more slower.
            self.loadgen.run(self.job(target, requests, 1, self.args.duration_limit), timeout=30)
        server, fake = tree_cpu_seconds(target.cpu_pid), process_cpu_seconds(self.fake_pid)
        with RssPeak(target.rss_pid) as rss:
            answer = self.loadgen.run(job, timeout=30)
        server = tree_cpu_seconds(target.cpu_pid) - server
        client = process_cpu_seconds(self.fake_pid) - fake + answer["cpu"]
        return Round(answer["results"], answer["wall"], server, client, rss.peak_kib)

    def resume_round(self, target, k: int, warm_up: bool = False) -> Round:
        """One resume round (loadgen.py's resume job): K resumable POSTs of ``--resume-tokens``
        tokens ``--resume-delay-ms`` apart, dropped once each sent its first text part, and K
        concurrent GETs resuming their chats; CPU and RSS over the whole round."""
        posts, gets = target.resume_requests(k, self.args.resume_tokens,
                                             self.args.resume_delay_ms)
        # A resume round takes one reply's time; a hung one (its worker died) should not
        # hold the run for the whole --duration-limit.
        reply = self.args.resume_tokens * self.args.resume_delay_ms / 1000
        limit = min(self.args.duration_limit, 3 * reply + 10)
        job = {**self.job(target, posts, 1, limit), "kind": "resume",
               "mode": "resume", "resumes": gets, "first_wait": 5.0,
               "expected": expected_text(self.args.resume_tokens)}
        server, fake = tree_cpu_seconds(target.cpu_pid), process_cpu_seconds(self.fake_pid)
        with RssPeak(target.rss_pid) as rss:
            answer = self.loadgen.run(job, timeout=30)
        server = tree_cpu_seconds(target.cpu_pid) - server
        client = process_cpu_seconds(self.fake_pid) - fake + answer["cpu"]
        if answer["unstarted"]:
            print(f"  {'resume':>15} K={k:<4} {answer['unstarted']} of {k} POSTs sent no text "
                  f"part within {job['first_wait']:g} s{' (warm-up)' if warm_up else ''}",
                  file=sys.stderr, flush=True)
        if warm_up and not any(r["status"] == 200 and r["complete"] for r in answer["results"]):
            raise RuntimeError(f"{target.name}: every warm-up resume failed: "
                               f"{answer['results'][:2]}")
        return Round(answer["results"], answer["wall"], server, client, rss.peak_kib,
                     answer["unstarted"])

    def _row(self, name: str, k: int, rounds: list[Round], tokens: int | None = None) -> Row:
        """A row summing ``rounds``."""
        return make_row(name, k, {"results": [r for one in rounds for r in one.results],
                                  "wall": sum(one.wall for one in rounds)},
                        tokens or self.args.tokens, sum(one.server_cpu for one in rounds),
                        max(one.rss_kib for one in rounds), sum(one.client_cpu for one in rounds))

    def row(self, name: str, k: int, rounds: list[Round], tokens: int | None = None) -> Row:
        """One table row from all rounds of a target at K; each round's CPU and TTFT p95 go to
        stderr, which shows how noisy the machine was."""
        row = self._row(name, k, rounds, tokens)
        alone = [self._row(name, k, [one], tokens) for one in rounds]
        cpu = " ".join(f"{one.cpu_per_1k or 0:.3f}" for one in alone)
        ttft = " ".join(f"{one.p('ttft', 95) or 0:.0f}" for one in alone)
        print(f"  {name:>15} K={k:<4} {row.streams} streams in {len(rounds)} rounds, "
              f"{row.errors} errors, {row.incomplete} incomplete; by round: CPU s/1k tokens "
              f"{cpu}, TTFT p95 ms {ttft}", file=sys.stderr, flush=True)
        return row

    def profile(self, target, k: int, seconds: int, out: Path) -> list[str]:
        """py-spy the target's worker while K-stream rounds run back to back."""
        py_spy = find_py_spy()
        if py_spy is None:
            return ["py-spy not found: `pip install py-spy` into the venv to profile"]
        title = f"py-spy, {target.name} worker, K={k}, {seconds} s (raw: {out}):"
        self.warm_up(target, k)
        job = self.job(target, target.prepare(k), 10_000, seconds + 2)
        spy = record(py_spy, self.loadgen.placement.client, target.rss_pid, seconds, out)
        answer = self.loadgen.run(job, timeout=30)
        _, errors = spy.communicate(timeout=60)
        if spy.returncode != 0 or not out.exists():
            return [title, f"  py-spy failed: {errors.strip()[-300:]}"]
        done = sum(1 for r in answer["results"] if r["complete"])
        return [title, f"  {done} streams completed while sampling"] + summarize(out)
