"""The benchmark measures what it says: recorded responses read back, rows, verdicts, and one
small real run of its command (fake upstream, load generator, gunicorn + gevent servers)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis

from tests.bench.ab import summary
from tests.bench.bodies import parse_response, raw_offset, read_data_stream, read_upstream
from tests.bench.checks import check_lines
from tests.bench.loadgen import _Recorder, build_requests, measure
from tests.bench.report import RESUME, Row, make_row, percentile
from tests.bench.soak import Sample, soak_checks
from tests.bench.targets import REDIS_URL
from tests.e2e.server import ROOT
from tests.fakes.protocols import REPLIES, chunk, expected_text

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
START = b'f:{"messageId":"msg-1"}\n'
FINISH = (b'e:{"finishReason":"stop","usage":{"promptTokens":1,"completionTokens":2},'
          b'"isContinued":false}\nd:{"finishReason":"stop","usage":{"promptTokens":1,'
          b'"completionTokens":2}}\n')


def data_stream(*parts: bytes, end: bytes = b"0\r\n\r\n") -> bytes:
    """A chunked data-protocol response, one chunk per part."""
    return HEAD + b"".join(chunk(part) for part in parts) + end


def test_chunked_body_is_joined_and_its_offsets_map_back_to_the_raw_bytes():
    raw = data_stream(START, b'0:"Hel"\n', b'0:"lo"\n' + FINISH)
    parsed = parse_response(raw)
    text, finished, first = read_data_stream(parsed.body)
    assert (parsed.status, text, finished) == (200, "Hello", True)
    assert parsed.body == START + b'0:"Hel"\n0:"lo"\n' + FINISH
    assert raw[raw_offset(parsed, first):].startswith(b'0:"Hel"')


def test_a_cut_stream_keeps_what_arrived_and_is_not_finished():
    parsed = parse_response(data_stream(START, b'0:"Hel"\n', end=b"5\r\n0:\"l"))
    assert read_data_stream(parsed.body) == ("Hel", False, len(START))


def test_a_stream_without_its_last_part_is_not_finished():
    body = parse_response(data_stream(START, b'0:"Hi"\n', FINISH.split(b"d:")[0])).body
    assert read_data_stream(body)[1] is False


def test_no_status_without_a_whole_head():
    assert parse_response(b"HTTP/1.1 200 OK\r\nContent-Ty").status is None
    assert parse_response(b"garbage\r\n\r\n").status is None


def test_a_body_without_chunking_is_read_as_is():
    parsed = parse_response(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + START)
    assert (parsed.status, parsed.body) == (200, START)


@pytest.mark.parametrize("provider", sorted(REPLIES))
def test_every_provider_stream_of_the_fake_reads_whole_and_first_content_is_a_token(provider):
    body = {"model": "m", "stream": True, "inputs": "Hi",
            "messages": [{"role": "user", "content": "Hi"}]}
    events = list(REPLIES[provider](body, "Hi").events(None, 6, "stop"))
    parsed = parse_response(HEAD + b"".join(data for _, data in events) + b"0\r\n\r\n")
    text, finished, first = read_upstream(parsed.body, provider)
    assert (text, finished) == (expected_text(6), True)
    # The first content is the first token's event, never a comment or an empty role chunk.
    first_token = next(data for kind, data in events if kind == "token")
    assert parsed.body[first:].startswith(first_token.split(b"\r\n", 1)[1][:40])


def test_an_upstream_stream_without_its_end_marker_is_not_finished():
    body = {"model": "m", "stream": True, "messages": []}
    events = REPLIES["openrouter"](body, "Hi").events(None, 3, "stop", terminate=False)
    text, finished, _ = read_upstream(parse_response(HEAD + b"".join(
        data for _, data in events)).body, "openrouter")
    assert (text, finished) == (expected_text(3), False)


GOOD = b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n'


@pytest.mark.parametrize("rest", [
    b'data: {"choices":[{"delta":{"cont',             # cut mid-line: the line is not read
    b"data: <html>\n\ndata: [DONE]\n\n",            # not JSON: nothing after it counts
])
def test_a_cut_or_garbled_upstream_line_ends_the_reading_unfinished(rest):
    assert read_upstream(GOOD + rest, "openrouter") == ("Hi", False, 0)


def recorded(reads: list[tuple[float, bytes]]) -> _Recorder:
    """A load-generator record of these (arrival time, bytes) reads."""
    recorder = _Recorder(b"", None)
    for at, data in reads:
        recorder.times.append(at)
        recorder.chunks.append(data)
    return recorder


def test_ttft_is_the_read_holding_the_first_content_byte_not_the_first_byte():
    raw = data_stream(START, b'0:"Hi"\n' + FINISH)
    split = raw.index(b'0:"Hi"') - 3  # the start part and the next chunk's size line first
    recorder = recorded([(10.010, raw[:split]), (10.050, raw[split:-5]), (10.080, raw[-5:])])
    result = measure(10.0, recorder, None, {"mode": "data", "expected": "Hi"})
    assert result["ttft"] == pytest.approx(0.050)
    assert result["total"] == pytest.approx(0.080)
    assert result["gap"] == pytest.approx(0.040)
    assert (result["status"], result["complete"], result["bytes"]) == (200, True, len(raw))


def test_a_stream_missing_tokens_is_incomplete_and_a_silent_server_is_an_error():
    raw = data_stream(START, b'0:"H"\n' + FINISH)
    short = measure(0.0, recorded([(0.1, raw)]), None, {"mode": "data", "expected": "Hi"})
    assert (short["status"], short["complete"]) == (200, False)
    silent = measure(0.0, recorded([]), "timeout", {"mode": "data", "expected": "Hi"})
    assert (silent["status"], silent["error"], silent["ttft"]) == (None, "timeout", None)


def test_a_resume_is_timed_to_its_first_body_byte_and_complete_only_from_its_start_part():
    raw = data_stream(START, b'0:"Hi"\n' + FINISH)
    split = raw.index(START) + 3  # the first read ends inside the start part
    recorder = recorded([(10.020, raw[:raw.index(START)]), (10.030, raw[:split][-3:]),
                         (10.070, raw[split:])])
    resumed = measure(10.0, recorder, None, {"mode": "resume", "expected": "Hi"})
    assert resumed["ttft"] == pytest.approx(0.030)  # the head alone is not a part
    assert (resumed["status"], resumed["complete"]) == (200, True)
    # Without its start part (or its finish part) a resume did not send the whole reply.
    headless = data_stream(b'0:"Hi"\n' + FINISH)
    assert not measure(0.0, recorded([(0.1, headless)]), None,
                       {"mode": "resume", "expected": "Hi"})["complete"]
    cut = data_stream(START, b'0:"Hi"\n', end=b"")
    assert not measure(0.0, recorded([(0.1, cut)]), None,
                       {"mode": "resume", "expected": "Hi"})["complete"]
    # A 204 (nothing running) has no first part and is an error of the row.
    empty = measure(0.0, recorded([(0.1, b"HTTP/1.1 204 NO CONTENT\r\n\r\n")]), None,
                    {"mode": "resume", "expected": "Hi"})
    assert (empty["status"], empty["ttft"], empty["complete"]) == (204, None, False)
    assert make_row(RESUME, 50, {"wall": 1.0, "results": [empty]}, 64, 0.0, 0, 0.0).errors == 1


def test_a_request_without_a_body_is_a_get():
    job = {"port": 8000, "headers": {"Cookie": "c=1"},
           "requests": [("/chat?chat_id=1&resumable=true", "{}"), ("/chat/1/stream", None)]}
    post, get = build_requests(job)
    assert post.startswith(b"POST /chat?chat_id=1&resumable=true HTTP/1.1\r\n")
    assert post.endswith(b"Cookie: c=1\r\n\r\n{}")
    assert get == (b"GET /chat/1/stream HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
                   b"Connection: close\r\nCookie: c=1\r\n\r\n")


def test_percentiles_interpolate():
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(list(map(float, range(101))), 95) == 95.0


def result(status=200, complete=True, ttft=0.1) -> dict:
    """One load-generator result."""
    return {"status": status, "error": None if status else "timeout", "ttft": ttft,
            "total": 1.0, "gap": 0.02, "bytes": 100, "complete": complete}


def test_a_row_counts_errors_incomplete_streams_and_cpu_per_completed_token():
    answer = {"wall": 2.0, "results": [result(), result(), result(complete=False),
                                       result(status=None, ttft=None), result(status=502)]}
    row = make_row("service", 200, answer, tokens=64, cpu=0.128, rss_kib=1000,
                   client_cpu=0.5)
    assert (row.streams, row.errors, row.incomplete) == (5, 2, 1)
    assert row.cpu_per_1k == pytest.approx(0.128 / (2 * 64) * 1000)
    assert row.client_core == 0.25 and row.ttft == [100.0] * 3
    assert dict(row.error_kinds) == {"timeout": 1, "HTTP 502": 1}


def test_no_cpu_figure_without_a_completed_stream_or_a_measured_cpu_time():
    failed = make_row("service", 1, {"wall": 1.0, "results": [result(complete=False)]}, 64,
                      0.5, 0, 0.0)
    unmeasured = make_row("service", 1, {"wall": 1.0, "results": [result()]}, 64, 0.0, 0, 0.0)
    assert failed.cpu_per_1k is None and unmeasured.cpu_per_1k is None


def row(target: str, k: int, ttft: float = 100.0, cpu: float = 0.05, errors: int = 0,
        incomplete: int = 0, rss: float = 100.0) -> Row:
    """A row whose TTFT percentiles are all ``ttft``."""
    return Row(target, k, 100, [ttft] * 100, [1000.0] * 100, [20.0] * 100, errors, incomplete,
               cpu, rss, 0.5)


def verdicts(rows: list[Row]) -> list[str]:
    """The first word of every check line."""
    return [line.split()[0] for line in check_lines(rows)]


def at_limits() -> dict[str, Row]:
    """Rows measured just at every target's limit."""
    return {
        "direct K=1": row("direct", 1, ttft=1.0),
        "service K=1": row("service", 1, ttft=4.0),                    # +3 ms
        "bare K=200": row("bare relay", 200, ttft=100.0, cpu=0.05),
        "service K=200": row("service", 200, ttft=110.0, cpu=0.065),   # +10 ms, 1.3x
        "redis K=200": row("service redis", 200, cpu=0.065),           # 1.3x
        "bare K=500": row("bare relay", 500, ttft=200.0),
        "service K=500": row("service", 500, ttft=220.0, rss=150.0),   # 1.1x
        "pool5 K=200": row("service pool=5", 200),
        "resume K=50": row(RESUME, 50, ttft=100.0),
    }


def test_the_issue_targets_pass_at_their_limits():
    assert verdicts(list(at_limits().values())) == ["PASS"] * 9


BEYOND = {  # each target's row just beyond its limit, and the verdict line it fails
    "service K=1": (row("service", 1, ttft=4.1), 0),
    "service K=200": (row("service", 200, ttft=110.1, cpu=0.06501), (1, 2)),
    "redis K=200": (row("service redis", 200, cpu=0.06501), 3),
    "service K=500": (row("service", 500, ttft=220.1, incomplete=1, rss=150.1), (4, 5, 7)),
    "pool5 K=200": (row("service pool=5", 200, errors=1), 6),
    "resume K=50": (row(RESUME, 50, ttft=100.1), 8),
}


@pytest.mark.parametrize("name", sorted(BEYOND))
def test_each_issue_target_fails_just_beyond_its_limit_and_only_it(name):
    rows = at_limits()
    rows[name], failing = BEYOND[name]
    failing = {failing} if isinstance(failing, int) else set(failing)
    assert verdicts(list(rows.values())) == ["FAIL" if i in failing else "PASS"
                                             for i in range(9)]


def test_the_k500_targets_fail_each_on_their_own():
    for changes, failing in [({"ttft": 220.1}, 4), ({"errors": 1}, 5), ({"incomplete": 1}, 5),
                             ({"rss": 150.1}, 7)]:
        rows = at_limits()
        rows["service K=500"] = row("service", 500, **{"ttft": 220.0, "rss": 150.0, **changes})
        assert [i for i, v in enumerate(verdicts(list(rows.values()))) if v == "FAIL"] == [
            failing], changes


def test_a_resume_that_failed_or_came_back_short_fails_however_fast_the_rest():
    for changes in ({"errors": 1}, {"incomplete": 1}):
        rows = at_limits()
        rows["resume K=50"] = row(RESUME, 50, ttft=20.0, **changes)
        assert verdicts(list(rows.values()))[8] == "FAIL", changes
    nothing = Row(RESUME, 50, 50, [], [], [], 50, 0, None, 0.0, 0.1)  # every resume failed
    assert check_lines([nothing])[8].startswith("FAIL  K=50 resume")


def test_a_target_not_measured_is_skipped_not_passed():
    assert verdicts([row("service", 200)]) == ["SKIP"] * 9
    # The Redis CPU check needs its own row: the service's does not stand in for it.
    assert verdicts([row("bare relay", 200), row("service", 200)])[3] == "SKIP"


def soak_verdicts(end: dict[int, tuple[int, int]], spans: list[Row] | None = None) -> list[bool]:
    """The soak's verdicts from a baseline of one worker (100,000 KiB, 50 fds) to ``end``."""
    baseline = Sample(60.0, {7: (100_000, 50)})
    return [passed for passed, _ in soak_checks(baseline, Sample(600.0, end),
                                                spans or [row("service", 200)], 10, 4)]


def test_the_soak_passes_below_10_percent_rss_growth_and_within_the_fd_slack():
    assert soak_verdicts({7: (109_999, 54)}) == [True, True, True]
    assert soak_verdicts({7: (110_000, 54)}) == [False, True, True]   # growth must stay under
    assert soak_verdicts({7: (90_000, 55)}) == [True, False, True]


def test_the_soak_fails_on_a_failed_stream_or_a_replaced_worker():
    assert soak_verdicts({7: (100_000, 50)}, [row("service", 200), row(
        "service", 200, incomplete=1)]) == [True, True, False]
    assert soak_verdicts({7: (100_000, 50)}, [row("service", 200, errors=1)])[-1] is False
    replaced = soak_checks(Sample(60.0, {7: (100_000, 50)}), Sample(600.0, {8: (90_000, 50)}),
                           [row("service", 200)])
    assert [passed for passed, _ in replaced] == [False, True]
    assert "[7] at the baseline, [8] at the end" in replaced[0][1]


@pytest.mark.slow
def test_the_benchmark_command_runs_every_target_end_to_end(tmp_path):
    """A small run of the very command the README shows, with real servers and streams: every
    target (the service's log in SQL and in Redis) and the resume measurement."""
    samples = tmp_path / "samples.json"
    completed = subprocess.run(
        [sys.executable, "-m", "tests.bench.run", "--concurrency", "1,4", "--tokens", "4",
         "--delay-ms", "5", "--rounds", "2", "--sequential", "3", "--warmup", "2",
         "--small-pool-k", "4", "--redis-k", "4", "--resume-k", "4", "--resume-tokens", "16",
         "--duration-limit", "20", "--output", str(tmp_path / "report.md"),
         "--samples", str(samples)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TMPDIR": str(tmp_path)})  # its logs and database stay in tmp_path
    assert completed.returncode == 0, completed.stderr[-2000:]
    rows = {(item["target"], item["k"]): item for item in json.loads(samples.read_text())}
    assert set(rows) == {(target, k) for target in ("direct", "bare relay", "service")
                         for k in (1, 4)} | {("service pool=5", 4), ("service redis", 4),
                                             (RESUME, 4)}
    for (target, k), item in rows.items():
        # Every K, K=1 too, is measured in --rounds (2) rounds: 2 x 3 sequential, 2 x 4.
        assert item["streams"] == (6 if k == 1 else 8), target
        assert (item["errors"], item["incomplete"]) == (0, 0), (target, k, item["error_kinds"])
        assert len(item["ttft"]) == item["streams"] and min(item["ttft"]) > 0
    assert rows["service", 4]["rss_mb"] > 0 and rows["bare relay", 4]["rss_mb"] > 0
    # A resume's first part comes long before its 16 tokens 20 ms apart have all been sent.
    assert max(rows[RESUME, 4]["ttft"]) < min(rows[RESUME, 4]["total"]) - 100
    report = (tmp_path / "report.md").read_text()
    assert "| service pool=5 | 4 " in report and "| service redis  | 4 " in report
    assert "| service (SQL log) | 4 | 8       |" in report
    stdout = completed.stdout.splitlines()
    # K=1 is measured, so its target is judged (the others need K=50, 200 and 500).
    assert any(line.startswith(("PASS  K=1:", "FAIL  K=1:")) for line in stdout)
    assert "worker died" not in completed.stdout
    # The Redis target's keys are gone, and only its own prefix was ever used.
    prefix = next(line for line in stdout if line.startswith("service redis: its log"))
    prefix = prefix.split("keys ")[1].split("*")[0]
    assert prefix.startswith("neptun-bench-")
    client = redis.Redis.from_url(REDIS_URL)
    assert list(client.scan_iter(match=prefix + "*")) == []


def test_the_ab_summary_compares_each_round_with_its_own_bare_relay():
    """CPU over all rounds; TTFT as the median of per-round differences, so a round where the
    machine ran slow for all three servers moves none of them."""
    runs = {"bare relay": [(1.0, 2.0), (2.0, 4.0), (1.0, 2.0)],
            "base": [(2.0, 3.0), (4.0, 16.0), (2.0, 3.0)],
            "this": [(1.5, 2.5), (3.0, 5.0), (1.5, 2.5)]}
    assert summary(runs) == [
        "base: CPU per request 2.000x the bare relay's, TTFT p50 +1.00 ms over it",
        "this: CPU per request 1.500x the bare relay's, TTFT p50 +0.50 ms over it",
        "this vs base: CPU per request 0.750x, TTFT p50 -0.50 ms",
        "mean TTFT p50 over rounds: bare relay 2.67 ms, base 7.33 ms, this 3.33 ms"]
    assert summary(runs, "p95")[2] == "this vs base: CPU per request 0.750x, TTFT p95 -0.50 ms"
    assert summary({**runs, "bare relay": [(0.0, 2.0)] * 3})[0].startswith(
        "base: CPU per request n/a the bare relay's")


@pytest.mark.parametrize("options, stat", [([], "p50"), (["--concurrency", "4"], "p95")])
def test_the_ab_command_compares_two_checkouts(tmp_path, options, stat):
    """A small real run: the bare relay, the service of a base checkout (here this one) and
    this service, in turns (sequential requests, or K concurrent streams per round); both
    services answer every request."""
    completed = subprocess.run(
        [sys.executable, "-m", "tests.bench.ab", str(ROOT), "--requests", "10", "--rounds", "2",
         "--tokens", "3", *options], cwd=ROOT, capture_output=True, text=True, timeout=180,
        env={**os.environ, "TMPDIR": str(tmp_path)})
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stderr.count("round ") == 2
    assert completed.stderr.count(f"TTFT {stat} ") == 6
    lines = completed.stdout.splitlines()
    assert lines[0].startswith("base: CPU per request ") and lines[1].startswith("this: ")
    assert lines[2].startswith("this vs base: CPU per request ")
    assert lines[3].startswith(f"mean TTFT {stat} over rounds: bare relay ")
