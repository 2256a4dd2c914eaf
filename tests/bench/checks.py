"""The issue's targets for N=64, D=20 ms and one gevent worker, each judged PASS, FAIL or SKIP."""
from __future__ import annotations

from collections.abc import Callable

from .report import Row, find_row, ttft_delta

SERVICE, BARE, DIRECT, SMALL_POOL = "service", "bare relay", "direct", "service pool=5"


def _overhead_k1(rows: list[Row]) -> tuple[bool, str] | None:
    """Service TTFT p50 minus direct TTFT p50 at K=1."""
    service, direct = find_row(rows, SERVICE, 1), find_row(rows, DIRECT, 1)
    delta = service and ttft_delta(service, direct, 50)
    return None if delta is None else (delta <= 5, f"{delta:+.1f} ms")


def _ttft_k200(rows: list[Row]) -> tuple[bool, str] | None:
    """Service TTFT p95 against bare relay p95 + 10 ms at K=200."""
    service, bare = find_row(rows, SERVICE, 200), find_row(rows, BARE, 200)
    if not (service and bare) or None in (service.p("ttft", 95), bare.p("ttft", 95)):
        return None
    ours, theirs = service.p("ttft", 95), bare.p("ttft", 95)
    return ours <= theirs + 10, f"{ours:.1f} ms vs {theirs:.1f} + 10 ms"


def _cpu_k200(rows: list[Row]) -> tuple[bool, str] | None:
    """Service CPU per 1k tokens against 1.2 x the bare relay's at K=200."""
    service, bare = find_row(rows, SERVICE, 200), find_row(rows, BARE, 200)
    if not (service and bare and service.cpu_per_1k and bare.cpu_per_1k):
        return None
    ratio = service.cpu_per_1k / bare.cpu_per_1k
    return ratio <= 1.2, (f"{service.cpu_per_1k:.3f} vs {bare.cpu_per_1k:.3f} s "
                          f"= {ratio:.2f}x")


def _clean_k500(rows: list[Row]) -> tuple[bool, str] | None:
    """No errors and no incomplete streams for the service at K=500."""
    row = find_row(rows, SERVICE, 500)
    if row is None:
        return None
    return row.errors == 0 and row.incomplete == 0, _failures(row)


def _small_pool(rows: list[Row]) -> tuple[bool, str] | None:
    """No errors with DATABASE_POOL_SIZE=5 at K=200."""
    row = find_row(rows, SMALL_POOL, 200)
    if row is None:
        return None
    return row.errors == 0, _failures(row)


def _rss_k500(rows: list[Row]) -> tuple[bool, str] | None:
    """Peak RSS of the service worker at K=500."""
    row = find_row(rows, SERVICE, 500)
    return None if row is None else (row.rss_mb <= 150, f"{row.rss_mb:.1f} MB")


def _failures(row: Row) -> str:
    """Errors (with their kinds) and incomplete streams."""
    kinds = ", ".join(f"{kind} x{count}" for kind, count in row.error_kinds.most_common())
    return f"{row.errors} errors{f' ({kinds})' if kinds else ''}, {row.incomplete} incomplete"


CHECKS: list[tuple[str, Callable[[list[Row]], tuple[bool, str] | None]]] = [
    ("K=1: service TTFT overhead vs direct, p50 <= 5 ms", _overhead_k1),
    ("K=200: service TTFT p95 <= bare relay p95 + 10 ms", _ttft_k200),
    ("K=200: service CPU per 1k tokens <= 1.2 x bare relay's", _cpu_k200),
    ("K=500: service has zero errors and zero incomplete streams", _clean_k500),
    ("K=200, DATABASE_POOL_SIZE=5: zero errors", _small_pool),
    ("K=500: peak RSS of the service's gunicorn worker <= 150 MB", _rss_k500),
]


def check_lines(rows: list[Row]) -> list[str]:
    """One PASS/FAIL/SKIP line per target."""
    lines = []
    for title, judge in CHECKS:
        verdict = judge(rows)
        if verdict is None:
            lines.append(f"SKIP  {title} (not measured)")
        else:
            passed, detail = verdict
            lines.append(f"{'PASS' if passed else 'FAIL'}  {title}: {detail}")
    return lines
