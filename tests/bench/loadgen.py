"""The benchmark's load generator: K concurrent streaming POSTs on raw asyncio sockets.

Runs in its own process (``python -m tests.bench.loadgen``): one JSON job per stdin line, one
JSON answer per stdout line. While streams run, a read costs a timestamp and a list append;
status, body, text and timings are worked out from the recorded reads once a round is over.
A ``"kind": "resume"`` job first starts K resumable POSTs, waits for each one's first text
part, drops them and measures the K GETs that resume their chats; a ``"kind": "loop"`` job (the
soak's) keeps K clients streaming, each sending its request again as soon as its last stream ended.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time

from .bodies import parse_response, raw_offset, read_data_stream, read_upstream


class _Recorder(asyncio.Protocol):
    """Sends one request on connect and records every read with its arrival time."""

    def __init__(self, request: bytes, done: asyncio.Future) -> None:
        self.request = request
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.times: list[float] = []
        self.chunks: list[bytes] = []

    def connection_made(self, transport) -> None:
        """Write the whole request at once."""
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        """Keep the bytes and when they came; nothing else on the hot path."""
        self.times.append(time.perf_counter())
        self.chunks.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        """The server closes after the response (every request says Connection: close)."""
        if not self.done.done():
            self.done.set_result(exc)


async def fetch(port: int, request: bytes, deadline: float) -> tuple[float, _Recorder, str | None]:
    """Run one request until the server closes or the deadline; returns the raw record."""
    loop = asyncio.get_running_loop()
    recorder = _Recorder(request, loop.create_future())
    started = time.perf_counter()
    error = None
    try:
        timeout = max(0.0, deadline - started)
        await asyncio.wait_for(loop.create_connection(lambda: recorder, "127.0.0.1", port),
                               timeout)
        await asyncio.wait_for(recorder.done, max(0.0, deadline - time.perf_counter()))
    except asyncio.TimeoutError:
        error = "timeout"
    except OSError as exc:
        error = type(exc).__name__
    finally:
        if recorder.transport is not None:
            recorder.transport.abort()
    return started, recorder, error


def measure(started: float, recorder: _Recorder, error: str | None, job: dict) -> dict:
    """Status, TTFT, total time, largest gap, bytes and completeness of one recorded stream."""
    raw = b"".join(recorder.chunks)
    parsed = parse_response(raw)
    # TTFT is the arrival of the first content byte: the first text part (data protocol) or
    # the first upstream event carrying text, never a comment or an empty event.
    if job["mode"] == "resume":
        # A resume's first part is its first body byte (the start part and every part so far);
        # it is complete when it holds the whole reply, from the start part to the finish.
        text, finished, _ = read_data_stream(parsed.body)
        finished = finished and parsed.body.startswith(b"f:")
        first = 0 if parsed.body else None
    elif job["mode"] == "data":
        text, finished, first = read_data_stream(parsed.body)
    else:
        text, finished, first = read_upstream(parsed.body, job["mode"])
    first_raw = None if first is None else raw_offset(parsed, first)
    ttft = None
    if first_raw is not None:
        end = 0
        for at, chunk in zip(recorder.times, recorder.chunks):
            end += len(chunk)
            if end > first_raw:
                ttft = at - started
                break
    times = recorder.times
    gap = max((b - a for a, b in zip(times, times[1:])), default=0.0)
    return {"status": parsed.status, "error": None if parsed.status else error or "no response",
            "ttft": ttft, "total": times[-1] - started if times else None, "gap": gap,
            "bytes": len(raw), "complete": finished and text == job["expected"]}


def build_requests(job: dict, key: str = "requests") -> list[bytes]:
    """Raw HTTP/1.1 requests, one per concurrent stream: a POST of each (path, body), a GET
    where the body is None."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in job["headers"].items())
    requests = []
    for path, body in job[key]:
        if body is None:
            requests.append((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{job['port']}\r\n"
                             f"Connection: close\r\n{extra}\r\n").encode())
            continue
        data = body.encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{job['port']}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                f"Connection: close\r\n{extra}\r\n")
        requests.append(head.encode() + data)
    return requests


async def run_job(job: dict) -> dict:
    """``rounds`` rounds, one after another, each opening every request concurrently."""
    requests = build_requests(job)
    deadline = time.perf_counter() + job["time_limit"]
    cpu, wall = time.process_time(), time.perf_counter()
    records = []
    for _ in range(job["rounds"]):
        if records and time.perf_counter() >= deadline:
            break  # a round that cannot finish in time is not started
        records += await asyncio.gather(*(fetch(job["port"], request, deadline)
                                          for request in requests))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    results = [measure(*record, job) for record in records]
    return {"results": results, "cpu": cpu, "wall": wall}


async def client_loop(port: int, request: bytes, stop_at: float,
                      deadline: float) -> list[tuple[float, _Recorder, str | None]]:
    """One client of a loop job: ``request`` again and again, the next as soon as the last
    ended, until ``stop_at`` (the stream running then may go on until ``deadline``)."""
    records = []
    while time.perf_counter() < stop_at:
        records.append(await fetch(port, request, deadline))
        if records[-1][2] is not None:
            await asyncio.sleep(0.1)  # a refused connection should not spin
    return records


async def run_loop_job(job: dict) -> dict:
    """K clients, one per request, each streaming continuously for ``duration`` seconds
    (``client_loop``); every stream is measured as in ``run_job``."""
    requests = build_requests(job)
    cpu, wall = time.process_time(), time.perf_counter()
    stop_at, deadline = wall + job["duration"], wall + job["time_limit"]
    loops = await asyncio.gather(*(client_loop(job["port"], request, stop_at, deadline)
                                   for request in requests))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    results = [measure(*record, job) for records in loops for record in records]
    return {"results": results, "cpu": cpu, "wall": wall}


class _Starter(_Recorder):
    """A resumable POST whose first text part is awaited (parsed on every read, which only
    the resume job's few streams pay, and only until it came)."""

    def __init__(self, request: bytes, done: asyncio.Future, texted: asyncio.Future) -> None:
        super().__init__(request, done)
        self.texted = texted

    def data_received(self, data: bytes) -> None:
        """Record the read; note when the first ``0:`` part is in."""
        super().data_received(data)
        if not self.texted.done() and read_data_stream(
                parse_response(b"".join(self.chunks)).body)[2] is not None:
            self.texted.set_result(None)


async def start_posts(port: int, requests: list[bytes], wait: float) -> int:
    """Open the POSTs at once, wait (at most ``wait`` s) until each has sent its first text
    part, then drop every connection; returns how many had not sent one."""
    loop = asyncio.get_running_loop()
    starters = [_Starter(request, loop.create_future(), loop.create_future())
                for request in requests]
    opened = await asyncio.gather(
        *(asyncio.wait_for(loop.create_connection(lambda s=s: s, "127.0.0.1", port), wait)
          for s in starters), return_exceptions=True)
    waiting = [s.texted for s, result in zip(starters, opened)
               if not isinstance(result, BaseException)]
    if waiting:
        await asyncio.wait(waiting, timeout=wait)
    for starter in starters:
        if starter.transport is not None:
            starter.transport.abort()
    return sum(1 for s in starters if not s.texted.done())


async def run_resume_job(job: dict) -> dict:
    """``rounds`` rounds of: K resumable POSTs started and dropped (``start_posts``), then K
    concurrent GETs resuming them, each measured like a stream (``mode`` "resume")."""
    posts, gets = build_requests(job), build_requests(job, "resumes")
    deadline = time.perf_counter() + job["time_limit"]
    cpu, wall = time.process_time(), time.perf_counter()
    records, unstarted = [], 0
    for _ in range(job["rounds"]):
        if records and time.perf_counter() >= deadline:
            break
        unstarted += await start_posts(job["port"], posts, job["first_wait"])
        records += await asyncio.gather(*(fetch(job["port"], request, deadline)
                                          for request in gets))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    results = [measure(*record, job) for record in records]
    return {"results": results, "cpu": cpu, "wall": wall, "unstarted": unstarted}


def raise_file_limit() -> None:
    """Hundreds of sockets need more than the default 1024 descriptors."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    """Answer jobs from stdin until it closes."""
    raise_file_limit()
    for line in sys.stdin:
        job = json.loads(line)
        runner = {"resume": run_resume_job, "loop": run_loop_job}.get(job.get("kind"), run_job)
        answer = asyncio.run(runner(job))
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
