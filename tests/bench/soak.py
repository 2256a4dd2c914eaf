"""A bounded soak of the service: ``python -m tests.bench.soak`` (10 minutes, K=200).

K clients stream without pause, each in a chat of its own: post a turn, read the whole reply,
post the next (the load generator's loop job). The load runs in spans of ``--interval`` seconds;
when a span ends, every stream has ended, and ``--settle`` seconds later every gunicorn worker's
VmRSS and open file descriptors are read. So all samples are taken at the same load, none: under
load the fd count moves with the streams in flight (two sockets each). The first span is the
warm-up (``--warmup`` seconds) and the sample after it the baseline. The soak passes when, for
every worker, RSS at the last sample is less than ``--rss-growth`` % above the baseline and its
fds at most ``--fd-slack`` above; no stream failed or came back incomplete; and no worker was
replaced. Otherwise it exits with status 1.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from .machine import RssPeak, children, machine_summary, open_fds, rss_kib, tree_cpu_seconds
from .measure import Bench
from .processes import LoadGen, Placement, start_fake
from .report import Row, make_row
from .run import prepare_process
from .targets import MODEL_NAMES, REDIS_URL, RedisService, Service, upstream_request


@dataclass
class Sample:
    """The workers between two spans of load, and the span before (none for the first)."""

    seconds: float                        # since the load began
    workers: dict[int, tuple[int, int]]   # pid: (VmRSS KiB, open fds)
    span: Row | None = None               # the streams of the span before this sample
    peak_kib: int = 0                     # the worker's peak VmRSS during that span


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--minutes", type=float, default=10, help="minutes of load, the warm-up included")
    add("--concurrency", type=int, default=200, help="K: clients streaming at once")
    add("--warmup", type=float, default=60, help="seconds of load before the baseline")
    add("--interval", type=float, default=20, help="seconds of load between two samples")
    add("--settle", type=float, default=2, help="seconds between a span's end and its sample")
    add("--tokens", type=int, default=64, help="N: tokens per reply")
    add("--delay-ms", type=float, default=20, help="D: milliseconds between tokens")
    add("--provider", default="openrouter", choices=sorted(MODEL_NAMES))
    add("--pool-size", type=int, default=20, help="DATABASE_POOL_SIZE of the service")
    add("--redis", action="store_true",
        help=f"the generation log in Redis ({REDIS_URL}, a key prefix of its own)")
    add("--rss-growth", type=float, default=10, help="largest RSS growth allowed, in %%")
    add("--fd-slack", type=int, default=4, help="open fds allowed above the baseline")
    args = parser.parse_args(argv)
    if args.minutes * 60 < args.warmup + args.interval:
        parser.error("--minutes must leave at least one --interval after the --warmup")
    return args


def read_workers(server) -> dict[int, tuple[int, int]]:
    """VmRSS (KiB) and open fds of each of the gunicorn master's workers."""
    return {pid: (rss_kib(pid), open_fds(pid)) for pid in sorted(children(server.pid))}


def soak_checks(baseline: Sample, last: Sample, spans: list[Row], rss_growth: float = 10,
                fd_slack: int = 4) -> list[tuple[bool, str]]:
    """(passed, what) for each worker's RSS growth and fds from the baseline to the last
    sample, the same workers throughout, and no failed or incomplete stream in ``spans``."""
    checks = []
    if not baseline.workers or set(last.workers) != set(baseline.workers):
        checks.append((False, f"the same workers throughout: {sorted(baseline.workers)} at "
                              f"the baseline, {sorted(last.workers)} at the end"))
    for pid, (rss, fds) in baseline.workers.items():
        if pid not in last.workers:
            continue
        end_rss, end_fds = last.workers[pid]
        growth = (end_rss - rss) / rss * 100 if rss else float("inf")
        checks.append((growth < rss_growth,
                       f"worker {pid} RSS growth < {rss_growth:g}%: {rss * 1024 / 1e6:.1f} -> "
                       f"{end_rss * 1024 / 1e6:.1f} MB ({growth:+.1f}%)"))
        checks.append((end_fds <= fds + fd_slack,
                       f"worker {pid} open fds <= baseline + {fd_slack}: {fds} -> {end_fds}"))
    errors, incomplete = sum(row.errors for row in spans), sum(row.incomplete for row in spans)
    kinds = sum((row.error_kinds for row in spans), Counter())
    detail = ", ".join(f"{kind} x{count}" for kind, count in kinds.items())
    checks.append((errors == 0 and incomplete == 0,
                   f"zero errors and zero incomplete streams: {errors} errors"
                   f"{f' ({detail})' if detail else ''}, {incomplete} incomplete"))
    return checks


def sample_line(sample: Sample, label: str) -> str:
    """One progress line: the span's streams and the workers afterwards."""
    workers = "; ".join(f"worker {pid}: RSS {rss * 1024 / 1e6:.1f} MB, {fds} fds"
                        for pid, (rss, fds) in sample.workers.items()) or "no worker"
    row = sample.span
    if row is None:
        return f"t={sample.seconds:5.0f} s  {label:<8} {workers}"
    ttft = row.p("ttft", 95)
    return (f"t={sample.seconds:5.0f} s  {label:<8} {row.streams} streams, {row.errors} errors, "
            f"{row.incomplete} incomplete, TTFT p95 {ttft or 0:.0f} ms, CPU "
            f"{row.cpu_per_1k or 0:.3f} s/1k tok, peak RSS {sample.peak_kib * 1024 / 1e6:.1f} MB"
            f" | {workers}")


def soak(args: argparse.Namespace,
         placement: Placement) -> tuple[list[Sample], list[str], list[str]]:
    """Start the fake, the load generator and the service; load it span after span, sampling
    its workers after each; always stop everything. Returns the samples, the processes that
    died (a worker, in gunicorn's log; the fake upstream, which ends the soak) and notes."""
    samples: list[Sample] = []
    deaths: list[str] = []
    notes: list[str] = []
    with ExitStack() as stack:
        fake, base_url = start_fake(placement, args.tokens, args.delay_ms)
        stack.callback(fake.stop)
        loadgen = LoadGen(placement)
        stack.callback(loadgen.stop)
        _, model_id = upstream_request(base_url, args.provider)
        kind = RedisService if args.redis else Service
        target = kind(placement, base_url, args.provider, model_id, args.pool_size,
                      args.log_dir)
        if args.redis:  # runs after the close below, which deletes the keys
            stack.callback(lambda: notes.append(
                f"its log was under Redis {REDIS_URL} keys {target.prefix}*; "
                f"{target.deleted} keys deleted at the end"))
        stack.callback(target.close)
        bench = Bench(args, loadgen, fake.pid)
        requests = target.prepare(args.concurrency)  # one chat per client, created once
        samples.append(Sample(0.0, read_workers(target.server)))
        print(sample_line(samples[-1], "start"), flush=True)
        # A stream's hard deadline: far beyond its N x D, well short of hanging the run.
        stream_limit = max(30.0, 5 * args.tokens * args.delay_ms / 1000)
        began = time.monotonic()
        end = began + args.minutes * 60
        while (left := end - time.monotonic()) > 1:
            span = min(args.warmup if len(samples) == 1 else args.interval, left)
            job = {**bench.job(target, requests, 1, span + stream_limit),
                   "kind": "loop", "duration": span}
            cpu = tree_cpu_seconds(target.server.pid)
            with RssPeak(target.rss_pid) as peak:
                answer = loadgen.run(job, timeout=30)
            cpu = tree_cpu_seconds(target.server.pid) - cpu
            time.sleep(args.settle)
            row = make_row(target.name, args.concurrency, answer, args.tokens, cpu, 0, 0.0)
            samples.append(Sample(time.monotonic() - began, read_workers(target.server), row,
                                  peak.peak_kib))
            print(sample_line(samples[-1], "warm-up" if len(samples) == 2 else ""), flush=True)
            if fake.process.poll() is not None:  # every later stream would fail: stop here
                deaths.append(f"the fake upstream exited with {fake.process.returncode} "
                              f"before t={samples[-1].seconds:.0f} s; the soak stopped")
                break
        deaths += [f"worker died during the run: {line.strip()}"
                   for line in target.server.worker_deaths()]
    return samples, deaths, notes


def main(argv: list[str] | None = None) -> None:
    """Run the soak, print every sample, the totals and the verdict; exit 1 on a FAIL."""
    args = parse_args(argv)
    placement = prepare_process()
    args.log_dir = Path(tempfile.mkdtemp(prefix="neptun-soak-logs-"))
    print(machine_summary(placement.pinned), flush=True)
    print(f"service{' (Redis log)' if args.redis else ' (SQL log)'}, K={args.concurrency} "
          f"clients streaming continuously for {args.minutes:g} min, N={args.tokens} tokens "
          f"D={args.delay_ms:g} ms, one gevent worker; workers sampled with no stream running, "
          f"{args.settle:g} s after each {args.interval:g} s span; baseline after the "
          f"{args.warmup:g} s warm-up; server logs in {args.log_dir}", flush=True)
    samples, deaths, notes = soak(args, placement)
    spans = [sample.span for sample in samples if sample.span is not None]
    checks = soak_checks(samples[1], samples[-1], spans, args.rss_growth, args.fd_slack)
    checks += [(False, death) for death in deaths]
    streams = sum(row.streams for row in spans)
    complete = streams - sum(row.errors + row.incomplete for row in spans)
    print(f"\ntotal: {streams} streams, {complete} complete, {complete * args.tokens} tokens "
          f"relayed, in {samples[-1].seconds:.0f} s")
    for note in notes:
        print(note)
    for passed, what in checks:
        print(f"{'PASS' if passed else 'FAIL'}  {what}")
    sys.exit(0 if all(passed for passed, _ in checks) else 1)


if __name__ == "__main__":
    main()
