"""GET /store/<id>, the read clients make most, against the floor: a raw psycopg2 WSGI app
whose one statement has PostgreSQL build the same JSON (bench/raw_app.py,
`one_statement_psycopg2`; psycopg2 is what postgresql:// URLs select). The same on psycopg 3,
which prepares its statement on the server, is shown beside it.

`.venv/bin/python bench/hot_read.py [--runs 5] [--seconds 8]` (needs `wrk`): one throwaway
PostgreSQL, the API (psycopg2, as postgresql:// URLs select, and psycopg 3) and the raw app
under gunicorn with 2 workers each, runs interleaved; prints the medians of requests per
second and of CPU time a request costs (the servers' workers and PostgreSQL's backends, from
/proc), and the API's ratios to the raw app. Goal: at least 0.7 of its requests per second.
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

GOAL = 0.7


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
    print(
        f"GET {path} (10 items, 3 tags), medians of {arguments.runs} runs of {arguments.seconds} s:"
    )
    for name, (rate, cpu) in medians.items():
        print(
            f"  {name:>20}: {rate:6.0f} req/s ({rate / raw_rate:.2f} of raw), "
            f"{cpu:5.0f} µs of CPU a request ({raw_cpu / cpu:.2f} of raw's rate by CPU)"
        )
    print(f"  runs (req/s, µs): {runs}")
    met = medians["API, psycopg2"][0] / raw_rate >= GOAL
    verdict = "met" if met else "NOT MET"
    print(f"[{verdict}] API (psycopg2) >= {GOAL} x raw psycopg2 (one statement) req/s")


if __name__ == "__main__":
    main()
