"""Run an app under the real server, gunicorn, on a free loopback port."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import requests

from tools.throwaway_postgres import free_port

ROOT = Path(__file__).resolve().parent.parent
# The project's WSGI app, as gunicorn names it.
API = "app:create_app()"


class Server(NamedTuple):
    url: str
    pid: int


@contextmanager
def gunicorn(app: str, env: dict[str, str], *options: str, quiet: bool = False) -> Iterator[Server]:
    """Serve `app` with the project's gunicorn.conf.py, `options` overriding it.

    `quiet` drops the server's log (one line per request), which a benchmark cannot afford
    to print.
    """
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--no-control-socket",
         "--bind", f"127.0.0.1:{port}", *options, app],
        cwd=ROOT, env={**os.environ, **env}, stderr=subprocess.DEVNULL if quiet else None,
    )  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", process.pid)
    try:
        wait_until_serving(server.url, process)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_until_serving(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise TimeoutError(f"no answer from {url} within {timeout} s")
