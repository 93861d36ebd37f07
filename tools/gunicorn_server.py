"""Run an app under the real server, gunicorn, on a loopback port of its own."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, NamedTuple

import requests

from tools.throwaway_postgres import on_a_free_port

ROOT = Path(__file__).resolve().parent.parent
# The project's WSGI app, as gunicorn names it.
API = "app:create_app()"


class Server(NamedTuple):
    url: str
    pid: int


def listening_socket(address: tuple[str, int] = ("127.0.0.1", 0)) -> socket.socket:
    """A loopback socket bound to a port the kernel picked (or `address`), handed to the
    server as is: picking a free port, closing it and letting the server bind it would race
    other processes for it."""
    listener = socket.create_server(address)
    listener.set_inheritable(True)
    return listener


@contextmanager
def gunicorn(
    app: str,
    env: dict[str, str],
    *options: str,
    stderr: IO | int | None = None,
    address: tuple[str, int] = ("127.0.0.1", 0),
    root: Path = ROOT,
) -> Iterator[Server]:
    """Serve `app` of the checkout at `root` (this one by default) with its gunicorn.conf.py,
    `options` overriding it, at `address` (by default a free loopback port); the server's
    log (one line per request, and errors) goes to `stderr`, by default the caller's."""
    with listening_socket(address) as listener:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--no-control-socket",
             "--config", configuration(root),
             "--bind", f"fd://{listener.fileno()}", *options, app],
            cwd=root, env={**os.environ, **env}, pass_fds=[listener.fileno()],
            stderr=stderr,
        )  # fmt: skip
        host, port = listener.getsockname()
        server = Server(f"http://{host}:{port}", process.pid)
    try:
        wait_until_serving(server.url, process)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def serving_as_written(
    command: list[str], env: dict[str, str], cwd: Path = ROOT, **popen
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run `command` as a deployment writes it (gunicorn, or a script that ends in one) with
    `env` as its whole environment, plus a bind to a free loopback port: GUNICORN_CMD_ARGS,
    which gunicorn applies over whatever configuration it reads. Yields the server's URL, once
    it answers, and its process."""
    with listening_socket() as listener:
        bind = f"--bind fd://{listener.fileno()} --no-control-socket"
        process = subprocess.Popen(
            command, cwd=cwd, env={**env, "GUNICORN_CMD_ARGS": bind},
            pass_fds=[listener.fileno()], **popen,
        )  # fmt: skip
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        wait_until_serving(url, process, timeout=60)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def configuration(root: Path) -> Path:
    """The checkout's gunicorn.conf.py: at the top, or in deploy/ in the revisions that kept it
    there (bench/compare.py serves those too)."""
    top = root / "gunicorn.conf.py"
    return top if top.exists() else root / "deploy" / "gunicorn.conf.py"


@contextmanager
def http_server_on_a_free_port(
    start: Callable[[int], subprocess.Popen],
    ready_path: str = "",
    timeout: float = 30,
    status: int | None = None,
) -> Iterator[str]:
    """A server that binds its port itself (nginx, Prometheus, etcd): `start(port)` launches
    it on a free loopback port, another one if that was taken meanwhile; yields its base URL
    once it answers HTTP at `ready_path` (with `status`, if given), and stops it at the end."""
    processes: list[subprocess.Popen] = []

    def started(port: int) -> None:
        process = start(port)
        processes.append(process)
        serving_or_failed(process, f"http://127.0.0.1:{port}{ready_path}", timeout, status)

    try:
        yield f"http://127.0.0.1:{on_a_free_port(started)}"
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


def serving_or_failed(
    process: subprocess.Popen, url: str, timeout: float = 30, status: int | None = None
) -> None:
    """Wait until the server answers at `url`; CalledProcessError if it exits first (its port
    was taken meanwhile, say), for on_a_free_port to try another."""
    try:
        wait_until_serving(url, process, timeout, status)
    except RuntimeError as exited:
        raise subprocess.CalledProcessError(process.returncode, process.args) from exited


def wait_until_serving(
    url: str, process: subprocess.Popen, timeout: float = 30, status: int | None = None
) -> None:
    """Wait until `url` answers HTTP (with `status`, if given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if status in (None, requests.get(url, timeout=2).status_code):
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"no answer from {url} within {timeout} s")
