"""What ETags cost GET /store/<id> (the hottest read) on PostgreSQL with psycopg2.

Measured where it can be seen, two ways: the API's own CPU time per request in one process,
with ETags and with Flask-Smorest's ETAG_DISABLED, in interleaved pairs of blocks (the
median of the pairs' differences: the ETag is computed in Python, the database's work is
the same either way); and the ETag's own step alone (hashing the answer, the header,
If-None-Match), best of many rounds. Each over the CPU time a whole request costs under wrk
(the API's workers and PostgreSQL's backends, from /proc) is the throughput it can take.
End-to-end rates on a shared machine drift ±15 % from run to run (bench/read_timeout.py),
too much to see 3 %.

`.venv/bin/python bench/etag_cost.py` (needs `wrk`).
"""

import argparse
import logging
import statistics
import sys
import time
import timeit
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app
from bench.read_timeout import measured
from bench.run import JWT_SECRET, admin_token_maker, dsn, seed_store, serve
from tools.gunicorn_server import API
from tools.throwaway_postgres import throwaway_postgres


def python_microseconds(url: str, path: str, pairs: int, requests: int) -> float:
    """The median, over interleaved pairs of blocks, of the difference in CPU time per
    request of the app in this process with and without ETags."""
    logging.getLogger("stores.requests").disabled = True
    clients = [
        create_app(url, JWT_SECRET_KEY=JWT_SECRET, ETAG_DISABLED=disabled).test_client()
        for disabled in (False, True)
    ]
    for client in clients:
        for _ in range(200):  # warm: connections, plans, caches
            client.get(path)

    def per_request(client) -> float:
        started = time.process_time()
        for _ in range(requests):
            client.get(path)
        return (time.process_time() - started) / requests * 1e6

    differences = []
    for pair in range(pairs):
        # Each first as often as the other: the first block of a pair runs slower.
        order = clients if pair % 2 else clients[::-1]
        timed = {id(client): per_request(client) for client in order}
        differences.append(timed[id(clients[0])] - timed[id(clients[1])])
    return statistics.median(differences)


def etag_step_microseconds(url: str, path: str) -> float:
    """Best of 20 rounds of 5,000: the ETag's step on GET /store/<id>'s real answer."""
    app = create_app(url, JWT_SECRET_KEY=JWT_SECRET)
    body = app.test_client().get(path).get_data()
    blueprint = app.blueprints["stores"]
    with app.test_request_context(path):
        bare = min(timeit.repeat(lambda: app.response_class(body), number=5000, repeat=20))
        tagged = min(
            timeit.repeat(
                lambda: blueprint._set_etag_in_response(app.response_class(body)),
                number=5000,
                repeat=20,
            )
        )
    return (tagged - bare) / 5000 * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=40, help="pairs of blocks")
    parser.add_argument("--requests", type=int, default=300, help="requests per block")
    parser.add_argument("--runs", type=int, default=3, help="wrk runs for a request's CPU")
    arguments = parser.parse_args()

    with throwaway_postgres() as cluster:
        url = cluster.url("psycopg2")
        admin_token_maker(url)  # migrates
        with psycopg.connect(dsn(url), autocommit=True) as connection:
            path = f"/store/{seed_store(connection, 'etags', 10, 3)}"
        postmaster = cluster.postmaster_pid()
        difference = python_microseconds(url, path, arguments.pairs, arguments.requests)
        step = etag_step_microseconds(url, path)
        with serve(API, url) as (base_url, master):
            runs = [measured(base_url, path, 8, master, postmaster) for _ in range(arguments.runs)]
    rate, request_cpu = (statistics.median(column) for column in zip(*runs, strict=True))
    print(
        f"GET /store/<id> under wrk: {rate:.0f} req/s, {request_cpu:.0f} µs of CPU a request "
        "(API and PostgreSQL)"
    )
    for what, cost in (("in one process, median of pairs", difference), ("step alone", step)):
        print(
            f"ETags' cost, {what}: {cost:.1f} µs; throughput ratio with ETags over without "
            f"{(request_cpu - cost) / request_cpu:.3f} (goal >= 0.97)"
        )


if __name__ == "__main__":
    main()
