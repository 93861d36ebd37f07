"""What archiving costs a write: POST /item's throughput through gunicorn (wrk, 16
connections) on three clusters side by side, runs interleaved:

1. archiving off (archive_mode = off);
2. archiving as docker-compose.yml runs it: archive_mode = on, pgBackRest's archive-push of
   each segment (zst, synchronous), archive_timeout = 60 s;
3. the zero-loss option on top: pg_receivewal --synchronous as the synchronous standby,
   synchronous_commit = on (docs/operations.md, "No write lost").

Each cluster is durable as deployed (fsync, synchronous commits, full page writes), unlike the
suite's: the receiver's flush is weighed against the primary's own. Prints the medians and
the ratios to archiving off (goal for 2: >= 0.95).

`.venv/bin/python bench/archiving_cost.py [--runs 5] [--seconds 10]` (needs `wrk`); starts
its own clusters, repository and receiver in temp dirs. Figures: docs/benchmarks.md.
"""

import argparse
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import (
    POST_ITEM_SCRIPT,
    admin_token_maker,
    dsn,
    requests_per_second,
    seed_store,
    serve,
)
from config.settings import DEFAULT_POSTGRES_DRIVER
from tools.gunicorn_server import API
from tools.throwaway_backups import throwaway_backups, wal_receiver
from tools.throwaway_postgres import ThrowawayPostgres, throwaway_postgres

CONFIGURATIONS = ("archiving off", "archiving", "zero-loss")


def cluster_of(stack: ExitStack, configuration: str) -> ThrowawayPostgres:
    cluster = stack.enter_context(throwaway_postgres(durable=True))
    if configuration != "archiving off":
        stack.enter_context(throwaway_backups(cluster))
    if configuration == "zero-loss":
        stack.enter_context(wal_receiver(cluster))
    return cluster


def post_item_script(cluster: ThrowawayPostgres) -> str:
    """wrk's POST /item into a store of its own, as an admin."""
    url = cluster.url(DEFAULT_POSTGRES_DRIVER)
    headers = admin_token_maker(url)()
    with psycopg.connect(dsn(url), autocommit=True) as connection:
        store_id = seed_store(connection, "archiving cost", 0, 0)
    return POST_ITEM_SCRIPT.format(store_id=store_id, authorization=headers["Authorization"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="wrk runs per configuration")
    parser.add_argument("--seconds", type=int, default=10, help="length of one wrk run")
    arguments = parser.parse_args()

    with ExitStack() as stack:
        clusters = {each: cluster_of(stack, each) for each in CONFIGURATIONS}
        scripts = {each: post_item_script(cluster) for each, cluster in clusters.items()}
        rates: dict[str, list[float]] = {each: [] for each in CONFIGURATIONS}
        # Interleaved: the machine's speed drifts, and each gets its share of every phase.
        for _ in range(arguments.runs):
            for each, cluster in clusters.items():
                url = cluster.url(DEFAULT_POSTGRES_DRIVER)
                with serve(API, url) as (base_url, _master):
                    rates[each].append(
                        requests_per_second(base_url, "/item", arguments.seconds, scripts[each])
                    )
    off = statistics.median(rates["archiving off"])
    for each in CONFIGURATIONS:
        median = statistics.median(rates[each])
        print(
            f"{each:>13}: POST /item {median:.0f} req/s, ratio {median / off:.3f}"
            f"   (runs: {[round(rate) for rate in rates[each]]})"
        )
    print("goal: archiving's ratio >= 0.95")


if __name__ == "__main__":
    main()
