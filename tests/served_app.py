"""Start ``app.py`` (or a wrapper around it) in a subprocess for a test, and stop it afterwards."""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from musiccap.bench import stop_app
from tests.conftest import REPO


@contextlib.contextmanager
def served_app(
    command: list[str], env: dict, port: int, log_path: Path, timeout_s: float = 180
) -> Iterator[str]:
    """Yields the app's URL once it answers on ``port``; its output goes to ``log_path``."""
    log = log_path.open("w")
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app exited with {process.returncode}: {log_path.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        raise RuntimeError(f"app did not answer on port {port} within {timeout_s:.0f} s")
    try:
        yield url
    finally:
        stop_app(process)
        log.close()
