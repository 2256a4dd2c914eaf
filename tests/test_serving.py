"""The gunicorn hooks' worker set-up (neptun_flask.serving); the drain on SIGTERM is tested end
to end in tests/e2e/test_generations.py."""
from __future__ import annotations

import gc
import signal
from types import SimpleNamespace

from neptun_flask import serving


def test_worker_init_sets_the_collector_threshold_and_chains_sigterm():
    saved_threshold, saved_handler = gc.get_threshold(), signal.getsignal(signal.SIGTERM)
    try:
        serving.post_worker_init(SimpleNamespace(cfg=SimpleNamespace(graceful_timeout=30)))
        assert gc.get_threshold() == (serving.GC_THRESHOLD, *saved_threshold[1:])
        assert serving.GC_THRESHOLD > saved_threshold[0]
        assert signal.getsignal(signal.SIGTERM) is not saved_handler
    finally:
        gc.set_threshold(*saved_threshold)
        signal.signal(signal.SIGTERM, saved_handler)
