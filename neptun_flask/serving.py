"""gunicorn settings and hooks for the service (``gunicorn -c python:neptun_flask.serving``).

On SIGTERM (a deploy) gunicorn stops accepting and lets running requests finish for its
graceful timeout, then kills the worker. Generations are not requests: these hooks let them
finish too, and store the ones still running shortly before the timeout as ``interrupted``
(and any left when the worker exits), so none is lost.
"""
from __future__ import annotations

import json
import signal
from http import HTTPStatus

from gunicorn.workers.ggevent import GeventWorker

#: Seconds before the graceful timeout's end at which running generations are interrupted,
#: leaving time to store them (half the timeout when it is shorter than twice this).
STORE_MARGIN = 1.5
#: gunicorn's own lines in JSON too when LOG_FORMAT=json.
logger_class = "neptun_flask.logs.GunicornLogger"


def post_worker_init(worker) -> None:
    """Chain a drain of the worker's generations to gunicorn's own SIGTERM handler."""
    previous = signal.getsignal(signal.SIGTERM)
    timeout = worker.cfg.graceful_timeout
    seconds = max(0.0, timeout - min(STORE_MARGIN, timeout / 2))

    def on_sigterm(signum, frame):
        if callable(previous):
            previous(signum, frame)
        import gevent
        from .generations.manager import drain_all
        gevent.spawn(drain_all, seconds)   # a signal handler must not block

    signal.signal(signal.SIGTERM, on_sigterm)


def worker_exit(server, worker) -> None:
    """The worker is leaving: store whatever still runs as interrupted."""
    from .generations.manager import interrupt_all
    interrupt_all(wait=1.0)


#: The metrics folder this master made (and removes at exit), if it made one.
_metrics_dir: str | None = None


def on_starting(server) -> None:
    """Before any worker: a clean folder for prometheus-client's per-process metric files
    (multiprocess mode, so /metrics sums the workers). ``PROMETHEUS_MULTIPROC_DIR`` if set
    (emptied of a previous run's files), else a fresh temporary folder; the workers inherit
    the variable."""
    global _metrics_dir
    import glob
    import os
    import tempfile

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
    else:
        _metrics_dir = tempfile.mkdtemp(prefix="neptun-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def child_exit(server, worker) -> None:
    """A worker is gone: drop its live gauges (active streams) from the sums."""
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    """Remove the metrics folder this master made."""
    if _metrics_dir:
        import shutil
        shutil.rmtree(_metrics_dir, ignore_errors=True)


class JsonErrorsWorker(GeventWorker):
    """gunicorn's gevent worker, whose own error answers (a request line or headers past
    gunicorn's limits: 414, 431; a malformed request: 400; a crash outside the app: 500) are
    JSON in the API's error shape instead of an HTML page. The limits stay gunicorn's own
    settings (``--limit-request-line``, ``--limit-request-fields``,
    ``--limit-request-field_size``)."""

    def handle_error(self, req, client, addr, exc):
        """gunicorn's handling (its status, its log lines), written as JSON."""
        super().handle_error(req, _JsonErrorSocket(client), addr, exc)


class _JsonErrorSocket:
    """Stands in for the client socket while gunicorn writes an error: its HTML answer
    becomes the same status with a JSON body."""

    def __init__(self, sock):
        self._sock = sock

    def gettimeout(self):
        return self._sock.gettimeout()

    def setblocking(self, flag):
        return self._sock.setblocking(flag)

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(json_error(data))

    def send(self, data: bytes) -> int:
        self.sendall(data)
        return len(data)


def json_error(http_answer: bytes) -> bytes:
    """The JSON form of one of gunicorn's HTML error answers (its status line is kept)."""
    status_line = http_answer.split(b"\r\n", 1)[0].decode("latin-1")
    try:
        status = int(status_line.split(" ", 2)[1])
        message = HTTPStatus(status).phrase
    except (IndexError, ValueError):
        status, message = 400, "Bad Request"
    body = json.dumps({"statusCode": status, "statusMessage": message}).encode()
    return (f"HTTP/1.1 {status} {message}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode("latin-1") + body


#: The worker every deployment of the service runs (``-k`` is not needed with this config).
worker_class = "neptun_flask.serving.JsonErrorsWorker"
