"""gunicorn settings and hooks for the service (``gunicorn -c python:neptun_flask.serving``).

On SIGTERM (a deploy) gunicorn stops accepting and lets running requests finish for its
graceful timeout, then kills the worker. Generations are not requests: these hooks let them
finish too, and store the ones still running shortly before the timeout as ``interrupted``
(and any left when the worker exits), so none is lost.
"""
from __future__ import annotations

import signal

#: Seconds before the graceful timeout's end at which running generations are interrupted,
#: leaving time to store them (half the timeout when it is shorter than twice this).
STORE_MARGIN = 1.5


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
