"""The benchmark measures what it says: recorded responses read back, rows, verdicts, and one
small real run of its command (fake upstream, load generator, gunicorn + gevent servers)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.bench.bodies import parse_response, raw_offset, read_data_stream, read_upstream
from tests.bench.checks import check_lines
from tests.bench.loadgen import _Recorder, measure
from tests.bench.report import Row, make_row, percentile
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


def test_the_issue_targets_pass_at_their_limits():
    rows = [row("direct", 1, ttft=1.0), row("service", 1, ttft=6.0),
            row("bare relay", 200, ttft=100.0, cpu=0.05),
            row("service", 200, ttft=110.0, cpu=0.06), row("service", 500, rss=150.0),
            row("service pool=5", 200)]
    assert verdicts(rows) == ["PASS"] * 6


def test_the_issue_targets_fail_just_beyond_their_limits():
    rows = [row("direct", 1, ttft=1.0), row("service", 1, ttft=6.1),
            row("bare relay", 200, ttft=100.0, cpu=0.05),
            row("service", 200, ttft=110.1, cpu=0.0601), row("service", 500, incomplete=1,
                                                              rss=150.1),
            row("service pool=5", 200, errors=1)]
    assert verdicts(rows) == ["FAIL"] * 6


def test_a_target_not_measured_is_skipped_not_passed():
    assert verdicts([row("service", 200)]) == ["SKIP"] * 6


@pytest.mark.slow
def test_the_benchmark_command_runs_every_target_end_to_end(tmp_path):
    """A small run of the very command the README shows, with real servers and streams."""
    samples = tmp_path / "samples.json"
    completed = subprocess.run(
        [sys.executable, "-m", "tests.bench.run", "--concurrency", "1,4", "--tokens", "4",
         "--delay-ms", "5", "--rounds", "2", "--sequential", "3", "--warmup", "2",
         "--small-pool-k", "4", "--output", str(tmp_path / "report.md"),
         "--samples", str(samples)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TMPDIR": str(tmp_path)})  # its logs and database stay in tmp_path
    assert completed.returncode == 0, completed.stderr[-2000:]
    rows = {(item["target"], item["k"]): item for item in json.loads(samples.read_text())}
    assert set(rows) == {(target, k) for target in ("direct", "bare relay", "service")
                         for k in (1, 4)} | {("service pool=5", 4)}
    for (target, k), item in rows.items():
        assert item["streams"] == (3 if k == 1 else 8), target
        assert (item["errors"], item["incomplete"]) == (0, 0), (target, k, item["error_kinds"])
        assert len(item["ttft"]) == item["streams"] and min(item["ttft"]) > 0
    assert rows["service", 4]["rss_mb"] > 0 and rows["bare relay", 4]["rss_mb"] > 0
    report = (tmp_path / "report.md").read_text()
    assert "| service pool=5 | 4 " in report
    # K=1 is measured, so its target is judged (the others need K=200 and K=500).
    assert any(line.startswith(("PASS  K=1:", "FAIL  K=1:"))
               for line in completed.stdout.splitlines())
