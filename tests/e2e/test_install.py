"""``pip install .`` (no -e) into a fresh virtualenv is a working deployment from any folder:
the migrations ship in the package, ``flask --app neptun_flask db upgrade`` runs from an
unrelated working folder, and gunicorn serves ``neptun_flask:create_app()``. Refusals to start
(an un-migrated database, no SECRET_KEY, a bad DATABASE_URL or number) are one line with no
traceback, under gunicorn and ``flask run``."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from .server import ROOT, free_port

pytestmark = pytest.mark.slow
UPGRADE = "flask --app neptun_flask db upgrade"


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtualenv with the checkout pip-installed into it (not editable)."""
    path = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    subprocess.run([str(path / "bin" / "pip"), "install", "-q", str(ROOT)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return path


@pytest.fixture
def place(tmp_path) -> Path:
    """An unrelated working folder."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def environment(venv: Path, **extra: str) -> dict[str, str]:
    """A clean environment: the venv first on PATH, nothing of the checkout's."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("DATABASE_", "SECRET_KEY", "FLASK_", "PYTHON",
                                  "PROMETHEUS_", "SERVER_SOFTWARE"))}
    env.update({"PATH": f"{venv / 'bin'}:{env.get('PATH', '')}", "SESSION_COOKIE_SECURE": "false",
                "RATELIMIT_ENABLED": "false", "LOG_LEVEL": "WARNING", "SECRET_KEY": "s3cret"})
    env.update(extra)
    return {key: value for key, value in env.items() if value is not None}


def gunicorn(venv: Path, place: Path, env: dict, port: int) -> subprocess.Popen:
    """gunicorn from the venv, in ``place``, serving the installed package's factory."""
    return subprocess.Popen(
        [str(venv / "bin" / "gunicorn"), "-k", "gevent", "-w", "1", "-b", f"127.0.0.1:{port}",
         "--no-control-socket", "-c", "python:neptun_flask.serving", "neptun_flask:create_app()"],
        cwd=place, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def assert_one_line(stderr: str, message: str) -> None:
    """The refusal is one line naming ``message``, and no traceback anywhere."""
    assert "Traceback" not in stderr, stderr
    assert len([line for line in stderr.splitlines() if message in line]) == 1, stderr


def test_installed_package_migrates_and_serves(venv, place):
    """From another folder: the installed copy (not the checkout) is imported; an un-migrated
    database is refused at once with the command to run; after that command, /health."""
    env = environment(venv, DATABASE_URL=f"sqlite:///{place / 'app.sqlite3'}")
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import neptun_flask; print(neptun_flask.__file__)"],
                           cwd=place, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(venv)), where.stdout

    refused = gunicorn(venv, place, env, free_port())
    _, stderr = refused.communicate(timeout=60)
    assert refused.returncode != 0
    assert_one_line(stderr, UPGRADE)

    upgrade = subprocess.run([str(venv / "bin" / "flask"), "--app", "neptun_flask", "db",
                              "upgrade"], cwd=place, env=env, capture_output=True, text=True)
    assert upgrade.returncode == 0, upgrade.stderr

    port = free_port()
    server = gunicorn(venv, place, env, port)
    try:
        deadline, status = time.monotonic() + 30, None
        while time.monotonic() < deadline and status != 200:
            assert server.poll() is None, server.communicate()[1]
            try:
                status = requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code
            except requests.RequestException:
                time.sleep(0.2)
        assert status == 200
    finally:
        server.terminate()
        server.communicate(timeout=15)


REFUSALS = [
    ({"SECRET_KEY": None}, "SECRET_KEY must be set"),
    ({"DATABASE_URL": "not a url"}, "DATABASE_URL is not a usable"),
    ({"DATABASE_URL": "mysqlx://user:pw@db/x"}, "DATABASE_URL is not a usable"),
    ({"DATABASE_POOL_SIZE": "lots"}, "DATABASE_POOL_SIZE must be an integer"),
    ({"UPSTREAM_IDLE_TIMEOUT": "1m"}, "UPSTREAM_IDLE_TIMEOUT must be a number"),
]


@pytest.mark.parametrize(("settings", "message"), REFUSALS,
                         ids=["no-secret", "bad-url", "unknown-driver", "bad-int", "bad-float"])
def test_startup_errors_are_one_line(venv, place, settings, message):
    """Under gunicorn and under ``flask run``: a non-zero exit, the message once, no
    traceback; the password of a bad URL is not repeated."""
    env = environment(venv, **{"DATABASE_URL": f"sqlite:///{place / 'x.sqlite3'}", **settings})
    server = gunicorn(venv, place, env, free_port())
    _, stderr = server.communicate(timeout=60)
    assert server.returncode != 0
    assert_one_line(stderr, message)
    run = subprocess.run([str(venv / "bin" / "flask"), "--app", "neptun_flask", "run", "-p",
                          str(free_port())], cwd=place, env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode != 0
    assert_one_line(run.stderr, message)
    assert "pw@" not in stderr + run.stderr


def test_flask_run_refuses_unmigrated_database(venv, place):
    """``flask run`` on an empty database: the upgrade command, one line."""
    env = environment(venv, DATABASE_URL=f"sqlite:///{place / 'empty.sqlite3'}")
    run = subprocess.run([str(venv / "bin" / "flask"), "--app", "neptun_flask", "run", "-p",
                          str(free_port())], cwd=place, env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode != 0
    assert_one_line(run.stderr, UPGRADE)
