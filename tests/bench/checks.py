"""The issue's targets for N=64, D=20 ms and one gevent worker, each judged PASS, FAIL or SKIP."""
from __future__ import annotations

from collections.abc import Callable

from .report import RESUME, Row, find_row, ttft_delta

SERVICE, BARE, DIRECT = "service", "bare relay", "direct"
SMALL_POOL, SERVICE_REDIS = "service pool=5", "service redis"


def _overhead_k1(rows: list[Row]) -> tuple[bool, str] | None:
    """Service TTFT p50 minus direct TTFT p50 at K=1."""
    service, direct = find_row(rows, SERVICE, 1), find_row(rows, DIRECT, 1)
    delta = service and ttft_delta(service, direct, 50)
    return None if delta is None else (delta <= 3, f"{delta:+.1f} ms")


def _p95s(rows: list[Row], target: str, k: int) -> tuple[float, float] | None:
    """TTFT p95 of ``target`` and of the bare relay at K, when both were measured."""
    ours, bare = find_row(rows, target, k), find_row(rows, BARE, k)
    if not (ours and bare) or None in (ours.p("ttft", 95), bare.p("ttft", 95)):
        return None
    return ours.p("ttft", 95), bare.p("ttft", 95)


def _ttft_k200(rows: list[Row]) -> tuple[bool, str] | None:
    """Service TTFT p95 against bare relay p95 + 10 ms at K=200."""
    p95s = _p95s(rows, SERVICE, 200)
    if p95s is None:
        return None
    ours, theirs = p95s
    return ours <= theirs + 10, f"{ours:.1f} ms vs {theirs:.1f} + 10 ms"


def _ttft_k500(rows: list[Row]) -> tuple[bool, str] | None:
    """Service TTFT p95 against 1.1 x the bare relay's p95 at K=500."""
    p95s = _p95s(rows, SERVICE, 500)
    if p95s is None:
        return None
    ours, theirs = p95s
    return ours <= 1.1 * theirs, f"{ours:.1f} vs {theirs:.1f} ms = {ours / theirs:.2f}x"


def _cpu_k200(target: str) -> Callable[[list[Row]], tuple[bool, str] | None]:
    """``target``'s CPU per 1k tokens against 1.3 x the bare relay's at K=200."""

    def judge(rows: list[Row]) -> tuple[bool, str] | None:
        ours, bare = find_row(rows, target, 200), find_row(rows, BARE, 200)
        if not (ours and bare and ours.cpu_per_1k and bare.cpu_per_1k):
            return None
        ratio = ours.cpu_per_1k / bare.cpu_per_1k
        return ratio <= 1.3, f"{ours.cpu_per_1k:.3f} vs {bare.cpu_per_1k:.3f} s = {ratio:.2f}x"

    return judge


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


def _resume_k50(rows: list[Row]) -> tuple[bool, str] | None:
    """Time from a resume's GET to its first part, p95, at K=50; no resume failed or came
    back without the whole reply."""
    row = find_row(rows, RESUME, 50)
    p95 = row and row.p("ttft", 95)
    if p95 is None:
        return None if row is None else (False, f"no first part; {_failures(row)}")
    return (p95 <= 100 and row.errors == 0 and row.incomplete == 0,
            f"{p95:.1f} ms, {_failures(row)}")


def _failures(row: Row) -> str:
    """Errors (with their kinds) and incomplete streams."""
    kinds = ", ".join(f"{kind} x{count}" for kind, count in row.error_kinds.most_common())
    return f"{row.errors} errors{f' ({kinds})' if kinds else ''}, {row.incomplete} incomplete"


CHECKS: list[tuple[str, Callable[[list[Row]], tuple[bool, str] | None]]] = [
    ("K=1: service TTFT overhead vs direct, p50 <= 3 ms", _overhead_k1),
    ("K=200: service TTFT p95 <= bare relay p95 + 10 ms", _ttft_k200),
    ("K=200: service CPU per 1k tokens <= 1.3 x bare relay's (SQL log)", _cpu_k200(SERVICE)),
    ("K=200: service redis CPU per 1k tokens <= 1.3 x bare relay's (Redis log)",
     _cpu_k200(SERVICE_REDIS)),
    ("K=500: service TTFT p95 <= 1.1 x bare relay's p95", _ttft_k500),
    ("K=500: service has zero errors and zero incomplete streams", _clean_k500),
    ("K=200, DATABASE_POOL_SIZE=5: zero errors", _small_pool),
    ("K=500: peak RSS of the service's gunicorn worker <= 150 MB", _rss_k500),
    ("K=50 resume: time to first part p95 <= 100 ms, zero errors and zero incomplete",
     _resume_k50),
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
