"""Benchmark the streaming relay with one command: ``python -m tests.bench.run``.

With the same N tokens per reply and D ms between tokens it measures, at each concurrency K:
the fake upstream directly, a bare Flask + requests relay (bare_relay.py) and the service
itself (real sessions, one chat per stream, replies stored in SQLite, the generation log in
SQL), all under ``gunicorn -k gevent -w 1``; then the service with its log in Redis at K=200
and 500, the service with DATABASE_POOL_SIZE=5 at K=200, and K=50 resumes of running
generations. It prints the machine, the tables and a PASS/FAIL line per target of the issue.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

from .checks import SERVICE, SERVICE_REDIS, SMALL_POOL, check_lines
from .litellm_proxy import LiteLLMProxy
from .loadgen import raise_file_limit
from .machine import machine_summary
from .measure import Bench
from .processes import LoadGen, Placement, start_fake
from .report import RESUME, Row, resume_lines, saturation_lines, table_lines
from .targets import (MODEL_NAMES, REDIS_URL, BareRelay, Direct, RedisService, Service,
                      upstream_request)

#: "resume" is measured on the service target's server (it needs "service" too).
TARGETS = ("direct", "bare", "service", "redis", "pool5", "resume")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--concurrency", default="1,50,200,500", help="comma-separated K values")
    add("--tokens", type=int, default=64, help="N: tokens per reply")
    add("--delay-ms", type=float, default=20, help="D: milliseconds between tokens")
    add("--provider", default="openrouter", choices=sorted(MODEL_NAMES))
    add("--duration-limit", type=float, default=60, help="seconds allowed for each K run")
    add("--sequential", type=int, default=6,
        help="requests one after another in each K=1 round")
    add("--warmup", type=int, default=5, help="concurrent warm-up requests before K=1")
    add("--rounds", type=int, default=5,
        help="measured rounds per target at each K (K streams; K=1: --sequential in a row)")
    add("--pool-size", type=int, default=20, help="DATABASE_POOL_SIZE of the main service run")
    add("--small-pool-k", type=int, default=200, help="K of the DATABASE_POOL_SIZE=5 run")
    add("--redis-k", default="200,500", help="K values of the service with its log in Redis")
    add("--resume-k", type=int, default=50, help="K of the resume measurement")
    add("--resume-tokens", type=int, default=64,
        help="tokens of each resumed reply (a directive to the fake, whatever N is)")
    add("--resume-delay-ms", type=float, default=20,
        help="milliseconds between the tokens of each resumed reply")
    add("--targets", default=",".join(TARGETS), help=f"subset of {','.join(TARGETS)}")
    add("--litellm", action="store_true",
        help="also measure the LiteLLM proxy (installed into a throwaway venv under /tmp)")
    add("--output", type=Path, help="also write the results as markdown to this file")
    add("--samples", type=Path, help="also write every row's samples as JSON to this file")
    add("--profile", type=int, default=0, metavar="SECONDS",
        help="also py-spy the bare relay and service workers for SECONDS (needs py-spy)")
    add("--profile-k", type=int, default=200, help="concurrency while profiling")
    args = parser.parse_args(argv)
    args.ks = [int(k) for k in args.concurrency.split(",") if k.strip()]
    args.redis_ks = [int(k) for k in args.redis_k.split(",") if k.strip()]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {sorted(unknown)}")
    return args


def make_targets(args, placement: Placement, fake_pid: int, base_url: str):
    """(factory, K values) for each chosen target, in the order they run."""
    upstream, model_id = upstream_request(base_url, args.provider)
    logs = args.log_dir
    plan = {
        "direct": (lambda: Direct(fake_pid, upstream, args.provider), args.ks),
        "bare": (lambda: BareRelay(placement, upstream, args.provider, logs), args.ks),
        "service": (lambda: Service(placement, base_url, args.provider, model_id,
                                    args.pool_size, logs), args.ks),
        "redis": (lambda: RedisService(placement, base_url, args.provider, model_id,
                                       args.pool_size, logs, name=SERVICE_REDIS),
                  args.redis_ks),
        "pool5": (lambda: Service(placement, base_url, args.provider, model_id, 5, logs,
                                  name=SMALL_POOL), [args.small_pool_k]),
    }
    chosen = [(name, *plan[name]) for name in TARGETS if name in plan and name in args.targets]
    if args.litellm:
        chosen.append(("litellm", lambda: LiteLLMProxy(placement, base_url, upstream, logs),
                       args.ks))
    return chosen


def run(args: argparse.Namespace, placement: Placement) -> tuple[list[Row], list[str]]:
    """Start the fake, the load generator and every target; measure; always stop everything.

    At each K every target gets a warm-up round, then ``--rounds`` measured rounds taken in
    turn (A, B, C, then B, C, A, ...), so a slow spell of the machine falls on all of them
    rather than on one; a row sums its rounds."""
    rows: list[Row] = []
    notes: list[str] = []  # failures and profiles, printed under the checks
    with ExitStack() as stack:
        fake, base_url = start_fake(placement, args.tokens, args.delay_ms)
        stack.callback(fake.stop)
        loadgen = LoadGen(placement)
        stack.callback(loadgen.stop)
        bench = Bench(args, loadgen, fake.pid)
        started = []  # (target, its K values)
        for name, factory, ks in make_targets(args, placement, fake.pid, base_url):
            print(f"starting {name}", file=sys.stderr, flush=True)
            try:
                target = factory()
            except Exception as error:  # noqa: BLE001 - report it and go on with the others
                notes.append(f"{name}: could not start: {error}")
                continue
            started.append((target, ks))
            if isinstance(target, RedisService):
                stack.callback(lambda t=target: notes.append(
                    f"{t.name}: its log was under Redis {REDIS_URL} keys {t.prefix}*; "
                    f"{t.deleted} keys deleted at the end"))
        stack.callback(close_all, [target for target, _ in started])
        measured: dict[tuple[str, int], Row] = {}
        service = next((target for target, _ in started if target.name == SERVICE), None)
        resume = "resume" in args.targets and args.resume_k > 0
        if resume and service is None:
            notes.append("resume: not measured, it needs the service target")
            resume = False
        all_ks = {k for _, ks in started for k in ks} | ({args.resume_k} if resume else set())
        for k in sorted(all_ks):
            active = [target for target, ks in started if k in ks]
            rounds = {target.name: [] for target in active}
            try:
                for target in active:
                    bench.warm_up(target, k)
                turns = args.rounds if active else 0  # none: resume only
                for turn in range(turns):
                    # The order rotates, so no target always goes first after the warm-ups.
                    for target in active[turn % len(active):] + active[:turn % len(active)]:
                        rounds[target.name].append(bench.measure_round(target, k))
            except Exception as error:  # noqa: BLE001 - keep the rows measured so far
                notes.append(f"K={k}: stopped early: {error}")
            for target in active:
                if rounds[target.name]:
                    measured[target.name, k] = bench.row(target.name, k, rounds[target.name])
            if resume and k == args.resume_k:
                row = measure_resume(bench, service, k, notes)
                if row is not None:
                    measured[RESUME, k] = row
        rows = [measured[target.name, k] for target, ks in started for k in ks
                if (target.name, k) in measured]
        rows += [row for (name, _), row in measured.items() if name == RESUME]
        for target, _ in started:
            server = getattr(target, "server", None)
            for line in server.worker_deaths() if server else []:
                notes.append(f"{target.name}: worker died during the run: {line.strip()}")
        if args.profile:
            for target, _ in started:
                if target.name in ("bare relay", "service"):
                    notes += bench.profile(target, args.profile_k, args.profile,
                                           args.log_dir / f"profile-{target.name.replace(' ', '-')}.txt")
    return rows, notes


def close_all(targets: list) -> None:
    """Stop every target at once (a service takes its graceful timeout to drain); an error
    closing one does not keep the others running."""
    errors: list[BaseException] = []

    def close(target) -> None:
        try:
            target.close()
        except BaseException as error:  # noqa: BLE001 - raised below, after the others
            errors.append(error)

    threads = [threading.Thread(target=close, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def measure_resume(bench: Bench, service, k: int, notes: list[str]) -> Row | None:
    """K resumes of running generations on the service: a warm-up round, then ``--rounds``
    rounds (one at K=1); failures go to ``notes``."""
    rounds = []
    try:
        bench.resume_round(service, k, warm_up=True)
        for _ in range(bench.args.rounds if k > 1 else 1):
            rounds.append(bench.resume_round(service, k))
    except Exception as error:  # noqa: BLE001 - keep the rounds measured so far
        notes.append(f"resume K={k}: stopped early: {error}")
    unstarted = sum(one.unstarted for one in rounds)
    if unstarted:
        notes.append(f"resume K={k}: {unstarted} POSTs sent no text part before being dropped")
    return bench.row(RESUME, k, rounds, bench.args.resume_tokens) if rounds else None


def report(args: argparse.Namespace, pinned: bool, rows: list[Row],
           notes: list[str], seconds: float) -> tuple[str, str]:
    """The report as terminal text and as markdown."""
    about = [machine_summary(pinned),
             f"N={args.tokens} tokens, D={args.delay_ms:g} ms, provider={args.provider}, one "
             f"gevent worker; times in ms; {args.rounds} rounds per target at each K, taken in "
             f"turn, of K streams (K=1: {args.sequential} sequential requests); "
             f"service DATABASE_POOL_SIZE={args.pool_size}; the direct row's CPU and RSS are "
             f"the fake upstream's; client core = busy share of the fake + load generator core",
             f"total run time {seconds:.0f} s; server logs in {args.log_dir}"]
    if "resume" in args.targets:
        about.append(f"resume: K={args.resume_k} resumable POSTs of {args.resume_tokens} tokens "
                     f"{args.resume_delay_ms:g} ms apart, dropped once each sent its first text "
                     f"part, then K concurrent GET .../chat/<id>/stream; first part = first "
                     f"body byte, timed from the GET's connect")
    table, checks = table_lines(rows), check_lines(rows) + saturation_lines(rows)
    resumes = resume_lines(rows)
    table += [""] + resumes if resumes else []
    profile = [""] + notes if notes else []
    text = "\n".join(about + [""] + table + [""] + checks + profile)
    markdown = "\n".join(["# neptun-flask streaming benchmark", ""]
                         + [f"- {line}" for line in about] + [""] + table
                         + ["", "```"] + checks + profile + ["```", ""])
    return text, markdown


def prepare_process() -> Placement:
    """Ready this process for a run: SIGTERM runs the finally blocks, the descriptor limit is
    raised, and where processes are pinned this one stays off the server's core."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally blocks run
    raise_file_limit()  # inherited by gunicorn, which holds two sockets per stream
    placement = Placement()
    if placement.pinned:
        os.sched_setaffinity(0, {int(placement.client[-1])})  # keep this process off the server
    return placement


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print (and optionally write) the report."""
    args = parse_args(argv)
    placement = prepare_process()
    args.log_dir = Path(tempfile.mkdtemp(prefix="neptun-bench-logs-"))
    started = time.monotonic()
    rows, notes = run(args, placement)
    text, markdown = report(args, placement.pinned, rows, notes,
                            time.monotonic() - started)
    print(text)
    if args.output:
        args.output.write_text(markdown)
    if args.samples:
        args.samples.write_text(json.dumps([asdict(row) for row in rows], indent=1))


if __name__ == "__main__":
    main()
