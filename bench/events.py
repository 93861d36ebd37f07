"""What the event feed costs and serves (issue 41.7): POST /item with its event against the
same write with the event's INSERT left out, short runs interleaved (the machine's load
drifts); and how many events a second the feed serves to one reader following its cursor.

`.venv/bin/python bench/events.py [--writes 50] [--runs 40] [--events 50000] [--baseline REV]`:
one throwaway PostgreSQL (psycopg2), the app in process (its test client: no HTTP server's
cost, so the write's ratio is the event's share of the app's own time, the strictest way to
count it). Prints the medians and the ratio; the events a second of GET /events?page_size=1000.
With `--baseline` (a revision before events, checked out into a temporary git worktree), the
same writes over HTTP too, one request at a time, to gunicorn (one worker) of this checkout
and of that revision, side by side on the same database.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import web.events
from app import create_app
from bench.run import JWT_SECRET, admin_token_maker, dsn
from config.settings import Settings
from tools.gunicorn_server import API, ROOT, gunicorn
from tools.throwaway_postgres import throwaway_postgres


@contextmanager
def without_events():
    """The writes as they were before events: web.events records nothing."""
    recording = web.events.record_event
    web.events.record_event = lambda *_, **__: None
    try:
        yield
    finally:
        web.events.record_event = recording


def write_seconds(client, store_id: int, writes: int, url: str = "") -> list[float]:
    """The time of each of `writes` POST /item (to the server at `url`, with a requests
    session as the `client`)."""
    took = []
    for _ in range(writes):
        body = {"name": "Benched", "price": 1, "store_id": store_id}
        started = time.perf_counter()
        response = client.post(f"{url}/item", json=body)
        took.append(time.perf_counter() - started)
        assert response.status_code == 201, response.text
    return took


def bench_http_writes(
    url: str, authorization: str, store_id: int, baseline: str, writes: int, runs: int
) -> tuple[float, float]:
    """The medians of POST /item over HTTP to this checkout and to `baseline`, runs
    interleaved."""
    session = requests.Session()
    session.headers["Authorization"] = authorization
    env = {"DATABASE_URL": url, "JWT_SECRET_KEY": JWT_SECRET}
    with tempfile.TemporaryDirectory() as checkout:
        subprocess.run(
            ["git", "worktree", "add", "--detach", checkout, baseline],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        try:
            with (
                gunicorn(API, env, "--workers", "1", stderr=subprocess.DEVNULL) as ours,
                gunicorn(
                    API, env, "--workers", "1", stderr=subprocess.DEVNULL, root=Path(checkout)
                ) as theirs,
            ):
                took = {ours.url: [], theirs.url: []}
                for server in took:  # warm-up
                    write_seconds(session, store_id, writes, server)
                for _ in range(runs):
                    for server, each in took.items():
                        each += write_seconds(session, store_id, writes, server)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", checkout], cwd=ROOT)
    return statistics.median(took[ours.url]), statistics.median(took[theirs.url])


def bench_writes(client, store_id: int, writes: int, runs: int) -> tuple[float, float]:
    """The medians of POST /item with and without its event, runs interleaved."""
    write_seconds(client, store_id, writes)  # warm-up
    with_events, without = [], []
    for _ in range(runs):
        with_events += write_seconds(client, store_id, writes)
        with without_events():
            without += write_seconds(client, store_id, writes)
    return statistics.median(with_events), statistics.median(without)


SEED_EVENTS = """
INSERT INTO events (type, resource_id, store_id, owner_id, actor_id, occurred_at, data)
SELECT 'item.updated', n, %(store)s, 1, 1, now(), %(data)s FROM generate_series(1, %(events)s) n
"""


def bench_feed(client, url: str, store_id: int, events: int) -> float:
    """Events a second to one reader following the feed from its start, page by page."""
    item = client.get(f"/item?store_id={store_id}&page_size=1").get_json()[0]
    with psycopg.connect(dsn(url), autocommit=True) as connection:
        connection.execute("DELETE FROM events")
        connection.execute("UPDATE event_feed SET pruned_through = head")
        connection.execute(
            SEED_EVENTS, {"store": store_id, "data": json.dumps(item), "events": events}
        )
    client.get("/events?page_size=1")  # places them: the feed's readers do, once
    started, read = time.perf_counter(), 0
    response = client.get("/events?page_size=1000")
    while page := response.get_json():
        read += len(page)
        response = client.get(response.headers["Link"].split(">")[0][1:])
    return read / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writes", type=int, default=50, help="POST /item per run")
    parser.add_argument("--runs", type=int, default=40, help="runs with and without events")
    parser.add_argument("--events", type=int, default=50_000, help="events the reader reads")
    parser.add_argument("--baseline", help="a revision before events, to write to over HTTP")
    arguments = parser.parse_args()
    with throwaway_postgres() as cluster:
        url = cluster.url("psycopg2")
        headers = admin_token_maker(url)  # migrates
        app = create_app(Settings(database_url=url, jwt_secret_key=JWT_SECRET))
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = headers()["Authorization"]
        store_id = client.post("/store", json={"name": "Benched"}).get_json()["id"]

        with_events, without = bench_writes(client, store_id, arguments.writes, arguments.runs)
        print(
            f"POST /item median: {with_events * 1000:.2f} ms with its event, "
            f"{without * 1000:.2f} ms without: ratio {with_events / without:.3f}"
        )
        if arguments.baseline:
            ours, theirs = bench_http_writes(
                url, headers()["Authorization"], store_id, arguments.baseline,
                arguments.writes, arguments.runs,
            )  # fmt: skip
            print(
                f"POST /item over HTTP, median: {ours * 1000:.2f} ms with its event, "
                f"{theirs * 1000:.2f} ms at {arguments.baseline}: ratio {ours / theirs:.3f}"
            )
        rate = bench_feed(client, url, store_id, arguments.events)
        print(f"GET /events to one reader: {rate:,.0f} events/s (page_size=1000)")


if __name__ == "__main__":
    main()
