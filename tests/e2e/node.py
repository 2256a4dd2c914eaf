"""Node.js for the tests that run real client libraries: the executable, with a folder's npm
packages installed exactly as its lockfile says (``npm ci``, on first use)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

INSTALL_TIMEOUT = 300


def _node_major(node: str) -> int:
    """The major version of ``node``, e.g. 20 for v20.11.1."""
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30,
                             check=True).stdout.strip()
    return int(version.lstrip("v").split(".")[0])


def _install(npm: str, folder: Path) -> None:
    """``npm ci`` in ``folder``, exactly as locked; fail the test on any problem."""
    try:
        result = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=folder, check=False,
                                capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`npm ci` in {folder} did not finish within {INSTALL_TIMEOUT} s",
                    pytrace=False)
    if result.returncode != 0:
        pytest.fail(f"`npm ci` in {folder} failed with exit code {result.returncode}:\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}", pytrace=False)


def node_with_packages(folder: Path, markers: tuple[str, ...]) -> str:
    """The node executable, once ``folder``'s packages are installed (``markers``: files under
    its node_modules whose presence means ``npm ci`` ran; it removes node_modules first).
    Without node and npm the test fails rather than skips, so a CI without Node cannot pass
    silently."""
    node, npm = shutil.which("node"), shutil.which("npm")
    missing = [name for name, path in (("node", node), ("npm", npm)) if path is None]
    if missing:
        pytest.fail(f"these tests need Node.js (>= 18) and npm on PATH to run the client "
                    f"libraries; not found: {', '.join(missing)}", pytrace=False)
    if _node_major(node) < 18:
        pytest.fail("the AI SDK needs Node.js >= 18 (global fetch)", pytrace=False)
    modules = folder / "node_modules"
    if not all((modules / marker).is_file() for marker in markers):
        _install(npm, folder)
    return node
