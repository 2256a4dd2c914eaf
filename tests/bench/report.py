"""Turning load-generator answers into rows, the results table and the PASS/FAIL lines."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile with linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Row:
    """One target at one concurrency; times in milliseconds."""

    target: str
    k: int
    streams: int
    ttft: list[float]
    total: list[float]
    gap: list[float]
    errors: int
    incomplete: int
    cpu_per_1k: float | None      # server process tree CPU s per 1,000 relayed tokens
    rss_mb: float                 # peak RSS of the worker (of the fake for "direct")
    client_core: float            # busy share of the client core (fake + load generator)
    error_kinds: Counter = field(default_factory=Counter)

    def p(self, name: str, q: float) -> float | None:
        """A percentile of ``ttft``, ``total`` or ``gap``."""
        return percentile(getattr(self, name), q)


def make_row(target: str, k: int, answer: dict, tokens: int, cpu: float, rss_kib: int,
             client_cpu: float) -> Row:
    """Summarize one run: errors have no 200 status, incomplete streams lack end or tokens."""
    results = answer["results"]
    ok = [r for r in results if r["status"] == 200]
    kinds = Counter(r["error"] or f"HTTP {r['status']}" for r in results if r["status"] != 200)
    complete = sum(1 for r in ok if r["complete"])
    wall = answer["wall"] or 1.0
    return Row(
        target=target, k=k, streams=len(results),
        ttft=[r["ttft"] * 1000 for r in ok if r["ttft"] is not None],
        total=[r["total"] * 1000 for r in ok if r["total"] is not None],
        gap=[r["gap"] * 1000 for r in ok], errors=len(results) - len(ok),
        incomplete=len(ok) - complete,
        # None, not 0, when the CPU time was below the clock tick (a tiny round).
        cpu_per_1k=cpu / (complete * tokens) * 1000 if complete and cpu > 0 else None,
        rss_mb=rss_kib * 1024 / 1e6, client_core=client_cpu / wall, error_kinds=kinds)


def find_row(rows: list[Row], target: str, k: int) -> Row | None:
    """The row of ``target`` at ``k``."""
    return next((r for r in rows if r.target == target and r.k == k), None)


def _ms(value: float | None, signed: bool = False) -> str:
    """Milliseconds with one decimal, or a dash."""
    if value is None:
        return "-"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def ttft_delta(row: Row, direct: Row | None, q: float) -> float | None:
    """TTFT percentile difference to the direct run at the same K."""
    if direct is None or row.p("ttft", q) is None or direct.p("ttft", q) is None:
        return None
    return row.p("ttft", q) - direct.p("ttft", q)


def _cpu_ratio(row: Row, rows: list[Row]) -> float | None:
    """Server CPU per token relative to the bare relay's at the same K."""
    bare = find_row(rows, "bare relay", row.k)
    if row.target == "direct" or bare is None or not bare.cpu_per_1k or row.cpu_per_1k is None:
        return None
    return row.cpu_per_1k / bare.cpu_per_1k


HEADER = ["target", "K", "streams", "TTFT p50", "TTFT p95", "Δp50 vs direct", "Δp95 vs direct",
          "total p95", "gap p95", "errors", "incomplete", "CPU s/1k tok", "CPU vs bare",
          "peak RSS MB", "client core"]


#: The row of the resume measurement (its TTFT is the time to a resume's first part).
RESUME = "service resume"


def _render(cells: list[list[str]]) -> list[str]:
    """Cells as an aligned markdown table, the first line its header."""
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]

    def render(line: list[str]) -> str:
        """One padded table line."""
        return "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return [render(cells[0]), rule] + [render(line) for line in cells[1:]]


def table_lines(rows: list[Row]) -> list[str]:
    """The results as an aligned markdown table (times in ms), without the resume rows."""
    cells = [HEADER]
    for row in rows:
        if row.target == RESUME:
            continue
        direct = find_row(rows, "direct", row.k) if row.target != "direct" else None
        ratio = _cpu_ratio(row, rows)
        cells.append([
            row.target, str(row.k), str(row.streams), _ms(row.p("ttft", 50)),
            _ms(row.p("ttft", 95)), _ms(ttft_delta(row, direct, 50), True),
            _ms(ttft_delta(row, direct, 95), True), _ms(row.p("total", 95)), _ms(row.p("gap", 95)),
            str(row.errors), str(row.incomplete),
            "-" if row.cpu_per_1k is None else f"{row.cpu_per_1k:.3f}",
            "-" if ratio is None else f"{ratio:.2f}", f"{row.rss_mb:.1f}",
            f"{row.client_core:.0%}"])
    return _render(cells)


RESUME_HEADER = ["resume", "K", "resumes", "first part p50", "first part p95",
                 "first part max", "total p95", "errors", "incomplete", "CPU s/1k tok",
                 "peak RSS MB"]


def resume_lines(rows: list[Row]) -> list[str]:
    """The resume measurement as a small table (times in ms from sending the GET), or
    nothing when it was not measured."""
    cells = [RESUME_HEADER]
    for row in rows:
        if row.target == RESUME:
            cells.append([
                "service (SQL log)", str(row.k), str(row.streams), _ms(row.p("ttft", 50)),
                _ms(row.p("ttft", 95)), _ms(row.p("ttft", 100)), _ms(row.p("total", 95)),
                str(row.errors), str(row.incomplete),
                "-" if row.cpu_per_1k is None else f"{row.cpu_per_1k:.3f}",
                f"{row.rss_mb:.1f}"])
    return _render(cells) if len(cells) > 1 else []


def saturation_lines(rows: list[Row]) -> list[str]:
    """Warn about rows where the client core (fake + load generator) was nearly always busy."""
    busy = [f"{row.target} K={row.k} ({row.client_core:.0%})" for row in rows
            if row.client_core >= 0.9]
    if not busy:
        return []
    return ["NOTE  client core >= 90% busy, so the fake and load generator limited: "
            + ", ".join(busy)]
