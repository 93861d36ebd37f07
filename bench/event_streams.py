"""GET /store/<id> with 0 and with 500 open event streams (GET /events/stream), side by side,
for each way of serving the streams:

- "own process": the API as shipped (gunicorn.conf.py: 2 sync workers) and the streams on a
  process of their own (deploy/stream.sh: gunicorn's threaded worker, 1000 threads), as
  docker-compose.yml runs them behind nginx;
- "gthread for all": one gunicorn with threaded workers (2 x 300 threads) serving both.

(Sync workers alone cannot hold them: each stream takes a worker for good, so 2 streams stop
every other request.) `.venv/bin/python bench/event_streams.py [--runs 3] [--seconds 8]
[--heartbeat 15]` (needs `wrk`): one throwaway PostgreSQL; runs interleaved; prints the
medians of requests per second, and their ratios to the API's as shipped with no stream
(goal: at least 0.9 with 500 streams).
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import JWT_SECRET, admin_token_maker, dsn, requests_per_second, seed_store
from tools.gunicorn_server import API, gunicorn, serving_as_written
from tools.throwaway_postgres import throwaway_postgres

GOAL = 0.9
# deploy/stream.sh runs `gunicorn`: this Python's.
PATH = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
STREAMS = 500


@contextmanager
def open_streams(url: str, token: str, count: int) -> Iterator[list[socket.socket]]:
    """`count` streams open on the server at `url`, each past its headers (the server holds
    it); closed at the end."""
    host, port = urlsplit(url).hostname, urlsplit(url).port
    request = (
        f"GET /events/stream HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: {token}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    streams: list[socket.socket] = []
    try:
        for _ in range(count):
            stream = socket.create_connection((host, port))
            stream.sendall(request)
            streams.append(stream)
        for stream in streams:
            stream.settimeout(30)
            assert stream.recv(4096).startswith(b"HTTP/1.1 200"), "a stream was refused"
        yield streams
    finally:
        for stream in streams:
            stream.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="wrk runs per case")
    parser.add_argument("--seconds", type=int, default=8, help="length of one wrk run")
    parser.add_argument("--heartbeat", type=float, default=15, help="seconds between heartbeats")
    arguments = parser.parse_args()

    with throwaway_postgres() as cluster:
        token = admin_token_maker(cluster.url())()["Authorization"]
        with psycopg.connect(dsn(cluster.url()), autocommit=True) as connection:
            path = f"/store/{seed_store(connection, 'streams', 10, 3)}"
        env = {
            "DATABASE_URL": cluster.url(),
            "JWT_SECRET_KEY": JWT_SECRET,
            "EVENT_STREAMS_PER_USER": str(STREAMS),
            "EVENT_STREAM_HEARTBEAT_SECONDS": str(arguments.heartbeat),
        }
        rates: dict[str, list[float]] = {}
        with ExitStack() as servers:
            api = servers.enter_context(
                gunicorn(API, env, "--workers", "2", stderr=subprocess.DEVNULL)
            ).url
            own, _ = servers.enter_context(
                serving_as_written(["sh", "deploy/stream.sh"], {**os.environ, **env, "PATH": PATH},
                                   stderr=subprocess.DEVNULL)
            )  # fmt: skip
            threaded = servers.enter_context(
                gunicorn(API, env, "--workers", "2", "--worker-class", "gthread",
                         "--threads", "300", stderr=subprocess.DEVNULL)
            ).url  # fmt: skip
            cases = {"own process": (api, own), "gthread for all": (threaded, threaded)}
            for _ in range(arguments.runs):
                for name, (reads, streamed) in cases.items():
                    rates.setdefault(f"{name}, 0", []).append(
                        requests_per_second(reads, path, arguments.seconds)
                    )
                    with open_streams(streamed, token, STREAMS):
                        time.sleep(1)
                        rates.setdefault(f"{name}, {STREAMS}", []).append(
                            requests_per_second(reads, path, arguments.seconds)
                        )
    print(
        f"GET {path}, medians of {arguments.runs} runs of {arguments.seconds} s, heartbeat "
        f"{arguments.heartbeat:g} s:"
    )
    # What GET /store/<id> does without streams as shipped: the API's sync workers.
    shipped = statistics.median(rates["own process, 0"])
    for name in cases:
        without = statistics.median(rates[f"{name}, 0"])
        with_streams = statistics.median(rates[f"{name}, {STREAMS}"])
        ratio = with_streams / shipped
        verdict = "met" if ratio >= GOAL else "NOT MET"
        print(
            f"  {name:>16}: {without:6.0f} req/s with no stream, {with_streams:6.0f} with "
            f"{STREAMS} ({with_streams / without:.2f} of its own); of the API's sync workers "
            f"with no stream: {ratio:.2f} [{verdict}: >= {GOAL}]"
        )
    print(f"  runs (req/s): {rates}")


if __name__ == "__main__":
    main()
