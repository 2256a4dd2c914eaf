"""/metrics under gunicorn -w 2 (prometheus-client's multiprocess mode, set up by
neptun_flask.serving): counters of both workers are summed in every scrape, a previous run's
files are wiped at start, a dead worker's live gauge goes, the token gate holds, and a
folder the master made is removed when it stops."""
from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from .server import Gunicorn

pytestmark = pytest.mark.slow
TOKEN = "scrape-token-e2e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROUTE = "/api/models"
SAMPLE = ("neptun_http_requests_total", {"method": "GET", "route": ROUTE, "status": "200"})


def counted(text: str) -> float:
    """The GET /api/models 200 count in a scrape (or a collector's text)."""
    name, labels = SAMPLE
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples if s.name == name and s.labels == labels)


def per_process(folder: str) -> dict[int, float]:
    """The count in each worker's own counter file (pid -> value)."""
    counts = {}
    for path in glob.glob(os.path.join(folder, "counter_*.db")):
        pid = int(path.rsplit("_", 1)[1].split(".")[0])
        with tempfile.TemporaryDirectory() as alone:
            shutil.copy(path, alone)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=alone)
            from prometheus_client import generate_latest
            counts[pid] = counted(generate_latest(registry).decode())
    return counts


def burst(base_url: str, count: int) -> None:
    """``count`` GETs of the catalog, 16 at a time, each on a new connection."""
    def get(_):
        assert requests.get(base_url + ROUTE, timeout=10).status_code == 200
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(get, range(count)))


def stale_file(folder: str) -> None:
    """A previous run's counter file in the folder: 1000 catalog GETs of a dead process."""
    code = ("from neptun_flask import metrics; metrics._recording = True; "
            "metrics.get().http_requests.labels('GET', '/api/models', '200').inc(1000)")
    subprocess.run([sys.executable, "-c", code], check=True,
                   env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": folder})
    assert glob.glob(os.path.join(folder, "counter_*.db"))


def test_scrape_sums_both_workers(migrated, tmp_path):
    """Requests spread over two workers are all counted in each scrape; stale files of a
    previous run are wiped; the token gate refuses a scrape without the token."""
    folder = str(tmp_path / "prom")
    os.makedirs(folder)
    stale_file(folder)
    server = Gunicorn({"DATABASE_URL": migrated, "METRICS_ENABLED": "true",
                       "METRICS_TOKEN": TOKEN, "PROMETHEUS_MULTIPROC_DIR": folder}, workers=2)
    try:
        refused = requests.get(server.base_url + "/metrics", timeout=10)
        assert refused.status_code == 401
        assert refused.json()["statusCode"] == 401 and "neptun_" not in refused.text
        sent = 0
        for _ in range(10):   # until both workers have served some
            burst(server.base_url, 40)
            sent += 40
            if len([n for n in per_process(folder).values() if n]) >= 2:
                break
        served = per_process(folder)
        assert len([n for n in served.values() if n]) >= 2, served
        assert sum(served.values()) == sent
        for _ in range(6):   # whichever worker answers the scrape, it reports the sum
            response = requests.get(server.base_url + "/metrics", headers=AUTH, timeout=10)
            assert response.status_code == 200
            assert counted(response.text) == sent
        # A worker killed outright: the master drops its live gauge file (child_exit).
        victim = next(pid for pid, n in served.items() if n)
        gauge = os.path.join(folder, f"gauge_livesum_{victim}.db")
        assert os.path.exists(gauge)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while os.path.exists(gauge) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not os.path.exists(gauge)
        assert "neptun_active_streams" in requests.get(
            server.base_url + "/metrics", headers=AUTH, timeout=10).text
    finally:
        server.stop()


def test_master_makes_and_removes_its_folder(migrated, monkeypatch):
    """Without PROMETHEUS_MULTIPROC_DIR the master makes a fresh temporary folder for the
    run (scrapes still sum the workers) and removes it when it stops."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    pattern = os.path.join(tempfile.gettempdir(), "neptun-metrics-*")
    before = set(glob.glob(pattern))
    server = Gunicorn({"DATABASE_URL": migrated, "METRICS_ENABLED": "true"}, workers=2)
    try:
        made = set(glob.glob(pattern)) - before
        assert len(made) == 1
        burst(server.base_url, 30)
        for _ in range(4):
            assert counted(requests.get(server.base_url + "/metrics", timeout=10).text) == 30
    finally:
        server.stop()
    assert not os.path.exists(made.pop())
