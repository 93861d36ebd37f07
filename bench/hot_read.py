"""GET /store/<id>, the read clients make most, against bare Flask and the floor.

Bare Flask is a Flask app of one route sending the API's one statement on one raw psycopg2
connection (bench/raw_app.py, `flask_one_statement`): what Flask itself costs, with nothing of
the API's. The floor is the same statement in a raw psycopg2 WSGI app
(`one_statement_psycopg2`; psycopg2 is what postgresql:// URLs select); beside it the same on
psycopg 3, which prepares its statement on the server.

`.venv/bin/python bench/hot_read.py [--runs 5] [--seconds 8]` (needs `wrk`): one throwaway
PostgreSQL, the API (psycopg2, as postgresql:// URLs select, and psycopg 3), bare Flask and the
raw apps under gunicorn with 2 workers each, runs interleaved; prints the medians of requests
per second and of CPU time a request costs (the servers' workers and PostgreSQL's backends,
from /proc), and each app's ratios to bare Flask and to the raw app. Goal: the API (psycopg2)
at least 0.85 of bare Flask's requests per second. On a machine shared with other work the
requests per second of one run scatter by tens of percent; the CPU time a request costs
scatters far less, and its ratio is printed beside.
"""

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.read_timeout import measured
from bench.run import (
    FLASK_ONE_STATEMENT,
    ONE_STATEMENT,
    ONE_STATEMENT_PSYCOPG2,
    serve,
    store_to_read,
)
from tools.gunicorn_server import API
from tools.throwaway_postgres import throwaway_postgres

GOAL = 0.85
BARE_FLASK = "bare Flask, psycopg2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="wrk runs per app")
    parser.add_argument("--seconds", type=int, default=8, help="length of one wrk run")
    arguments = parser.parse_args()

    with throwaway_postgres() as cluster:
        path = f"/store/{store_to_read(cluster, 'hot read')}"
        postmaster = cluster.postmaster_pid()
        apps = {
            "API, psycopg2": (API, cluster.url("psycopg2")),
            "API, psycopg 3": (API, cluster.url("psycopg")),
            "raw, psycopg2": (ONE_STATEMENT_PSYCOPG2, cluster.url("psycopg2")),
            "raw, psycopg 3": (ONE_STATEMENT, cluster.url("psycopg")),
            "bare Flask, psycopg2": (FLASK_ONE_STATEMENT, cluster.url("psycopg2")),
        }
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in apps}
        # Interleaved: the machine's speed drifts, and each app gets its share of every phase.
        for _ in range(arguments.runs):
            for name, (app, url) in apps.items():
                with serve(app, url, "--workers", "2") as server:
                    runs[name].append(
                        measured(server.url, path, arguments.seconds, server.pid, postmaster)
                    )
    medians = {
        name: [statistics.median(column) for column in zip(*each, strict=True)]
        for name, each in runs.items()
    }
    raw_rate, raw_cpu = medians["raw, psycopg2"]
    flask_rate, flask_cpu = medians[BARE_FLASK]
    print(
        f"GET {path} (10 items, 3 tags), medians of {arguments.runs} runs of {arguments.seconds} s"
        " (ratios of requests per second; by CPU: of the reciprocal of CPU time a request):"
    )
    for name, (rate, cpu) in medians.items():
        print(
            f"  {name:>20}: {rate:6.0f} req/s ({rate / flask_rate:.2f} of bare Flask, "
            f"{rate / raw_rate:.2f} of raw), {cpu:5.0f} µs of CPU a request "
            f"(by CPU {flask_cpu / cpu:.2f} of bare Flask, {raw_cpu / cpu:.2f} of raw)"
        )
    print(f"  runs (req/s, µs): {runs}")
    met = medians["API, psycopg2"][0] / flask_rate >= GOAL
    verdict = "met" if met else "NOT MET"
    print(f"[{verdict}] API (psycopg2) >= {GOAL} x bare Flask (psycopg2) req/s")


if __name__ == "__main__":
    main()
