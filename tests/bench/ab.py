"""Before and after a change, in one run: ``python -m tests.bench.ab BASE_DIR``.

The full benchmark's K=1 rows come from a single round each, and this VM's speed moves by half
within minutes, so a change of a few tenths of a millisecond per request drowns in two runs
taken one after the other. This compares two checkouts of the service side by side instead:
the one at ``BASE_DIR`` (e.g. ``git worktree add /tmp/base HEAD~1``) and this one, each under
its own gunicorn (the same settings as the benchmark's service), with the bare relay as the
yardstick. Rounds of ``--requests`` sequential requests are taken in turn (bare, base, this;
then this, base, bare; ...), so a slow spell falls on all three. Per round it takes each
server's CPU per request and its median TTFT; the summary gives each service's CPU per
request against the bare relay's and the base's (over all rounds), and the median over rounds
of its TTFT difference to them. With ``--concurrency K`` a round is K concurrent streams
instead, and its TTFT the round's p95 (the K=500 target's measure).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from .measure import Bench
from .processes import LoadGen, Placement, start_fake
from .report import percentile
from .targets import BareRelay, Service, upstream_request

PROVIDER = "openrouter"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", type=Path, help="a checkout of the version to compare with")
    parser.add_argument("--requests", type=int, default=300, dest="sequential",
                        help="sequential requests per round and server (default 300)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=4, help="tokens per reply (default 4)")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, default=1, metavar="K",
                        help="K > 1: each round is K concurrent streams instead of "
                             "--requests sequential ones, and TTFT is the round's p95")
    args = parser.parse_args(argv)
    args.duration_limit = 600.0   # what Bench's rounds read besides the above
    if not (args.base / "wsgi.py").exists():
        parser.error(f"{args.base} is not a checkout of the service (no wsgi.py)")
    return args


def ttft_percentile(k: int) -> int:
    """The TTFT percentile a round reports: the median of sequential requests, the p95 of K
    concurrent streams (the targets' measures)."""
    return 50 if k == 1 else 95


def measure(bench: Bench, target) -> tuple[float, float]:
    """One round of the benchmark (``--requests`` sequential requests, or ``--concurrency``
    concurrent streams): the server's CPU ms per request and the TTFT p50 (p95 when
    concurrent)."""
    k = bench.args.concurrency
    done = bench.measure_round(target, k)
    ok = [r for r in done.results if r["status"] == 200 and r["complete"]]
    if len(ok) != len(done.results):
        raise RuntimeError(f"{target.name}: {len(done.results) - len(ok)} of "
                           f"{len(done.results)} requests failed")
    return (done.server_cpu * 1000 / len(ok),
            percentile([r["ttft"] * 1000 for r in ok], ttft_percentile(k)))


def main(argv: list[str] | None = None) -> None:
    """Run the rounds and print each, then the summary."""
    args = parse_args(argv)
    placement = Placement()
    logs = Path(tempfile.mkdtemp(prefix="neptun-ab-logs-"))
    fake, base_url = start_fake(placement, args.tokens, args.delay_ms)
    servers, loadgen = [], None
    try:
        upstream, model_id = upstream_request(base_url, PROVIDER)
        servers.append(BareRelay(placement, upstream, PROVIDER, logs))
        servers.append(Service(placement, base_url, PROVIDER, model_id, 20, logs, name="base",
                               root=args.base.resolve()))
        servers.append(Service(placement, base_url, PROVIDER, model_id, 20, logs, name="this"))
        loadgen = LoadGen(placement)
        bench = Bench(args, loadgen, fake.pid)
        stat = f"p{ttft_percentile(args.concurrency)}"
        for server in servers:   # pools, caches and the first chat at their working state
            measure(bench, server)
        runs: dict[str, list[tuple[float, float]]] = {s.name: [] for s in servers}
        for index in range(args.rounds):
            for server in servers if index % 2 == 0 else servers[::-1]:
                runs[server.name].append(measure(bench, server))
            print(f"round {index + 1}: " + "; ".join(
                f"{name} {one[-1][0]:.2f} ms CPU, TTFT {stat} {one[-1][1]:.2f} ms"
                for name, one in runs.items()), file=sys.stderr, flush=True)
        print("\n".join(summary(runs, stat)))
        print(f"(server logs in {logs})")
    finally:
        for server in servers:
            server.close()
        if loadgen is not None:
            loadgen.stop()
        fake.stop()


def summary(runs: dict[str, list[tuple[float, float]]], stat: str = "p50") -> list[str]:
    """CPU per request over all rounds (the turns spread a slow spell over every server; one
    round's CPU is only a few clock ticks), the median over rounds of each round's TTFT
    difference, and each server's mean TTFT over rounds."""
    def cpu(name: str, against: str) -> str:
        total = sum(one[0] for one in runs[against])
        return f"{sum(one[0] for one in runs[name]) / total:.3f}x" if total else "n/a"

    def ttft(name: str, against: str) -> float:
        return statistics.median(a[1] - b[1] for a, b in zip(runs[name], runs[against]))

    lines = [f"{name}: CPU per request {cpu(name, 'bare relay')} the bare relay's, "
             f"TTFT {stat} {ttft(name, 'bare relay'):+.2f} ms over it" for name in ("base", "this")]
    lines.append(f"this vs base: CPU per request {cpu('this', 'base')}, "
                 f"TTFT {stat} {ttft('this', 'base'):+.2f} ms")
    lines.append(f"mean TTFT {stat} over rounds: " + ", ".join(
        f"{name} {statistics.mean(one[1] for one in rounds):.2f} ms"
        for name, rounds in runs.items()))
    return lines


if __name__ == "__main__":
    main()
