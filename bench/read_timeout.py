"""What the statement timeout on reads costs: GET /store/<id> with each driver, the timeout
on (the default, 30 s, carried in each read's query string) and off (0), runs interleaved.

`.venv/bin/python bench/read_timeout.py` (needs `wrk`); prints medians and ratios.
"""

import argparse
import statistics
import sys
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import DRIVERS, admin_token_maker, dsn, requests_per_second, seed_store, serve
from tools.gunicorn_server import API
from tools.throwaway_postgres import throwaway_postgres

TIMEOUTS = {"with": "30000", "without": "0"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="wrk runs per configuration")
    parser.add_argument("--seconds", type=int, default=10, help="length of one wrk run")
    arguments = parser.parse_args()

    with throwaway_postgres() as cluster:
        admin_token_maker(cluster.url())  # migrates
        with psycopg.connect(dsn(cluster.url()), autocommit=True) as connection:
            store_id = seed_store(connection, "read timeout", 10, 3)
        rates = {(driver, kind): [] for driver in DRIVERS for kind in TIMEOUTS}
        # Interleaved: the machine's speed drifts, and each gets its share of every phase.
        for _ in range(arguments.runs):
            for driver, kind in rates:
                timeout = {"DATABASE_STATEMENT_TIMEOUT_MS": TIMEOUTS[kind]}
                with serve(API, cluster.url(driver), **timeout) as (base_url, _master):
                    path = f"/store/{store_id}"
                    rates[driver, kind].append(
                        requests_per_second(base_url, path, arguments.seconds)
                    )
    for driver in DRIVERS:
        with_, without = (statistics.median(rates[driver, kind]) for kind in TIMEOUTS)
        print(
            f"{driver:>8}: GET /store/<id> with the read timeout {with_:.0f} req/s, without "
            f"{without:.0f} req/s: ratio {with_ / without:.3f} (goal >= 0.97)\n"
            f"          runs with {rates[driver, 'with']}, without {rates[driver, 'without']}"
        )


if __name__ == "__main__":
    main()
