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

On a shared machine runs drift by 2x, more than archiving's cost, which is paid once per
segment (16 MB, or archive_timeout's switch), apart from commits. So it is also measured where
it can be seen: the WAL a POST /item writes, and archive-push's time on each segment archived
during the load (pushed again into a second repository): all of it over the load's time is
archiving's share of the machine. And a commit's own time, one client alone, on each: what
the zero-loss option adds to a write.

`.venv/bin/python bench/archiving_cost.py [--runs 5] [--seconds 10]` (needs `wrk`); starts
its own clusters, repository and receiver in temp dirs. Figures: docs/benchmarks.md.
"""

import argparse
import os
import statistics
import sys
import time
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
from tools.throwaway_backups import (
    ThrowawayBackups,
    connect,
    throwaway_backups,
    wal_receiver,
)
from tools.throwaway_postgres import ThrowawayPostgres, throwaway_postgres

CONFIGURATIONS = ("archiving off", "archiving", "zero-loss")
SEGMENT_BYTES = 16 * 1024 * 1024


def wal_position(cluster: ThrowawayPostgres) -> str:
    with connect(cluster) as db:
        return db.execute("SELECT pg_current_wal_lsn()").fetchone()[0]


def push_seconds(cluster: ThrowawayPostgres, backups: ThrowawayBackups, since: str) -> list[float]:
    """archive-push's wall time (one process, as the archiver runs it) for each segment
    archived since the WAL position `since`, up to the one now written (full ones, and those
    archive_timeout switched), pushed again into a repository of its own."""
    with connect(cluster) as db:
        first, last = db.execute(
            "SELECT pg_walfile_name(%s), pg_walfile_name(pg_current_wal_lsn())", (since,)
        ).fetchone()
    backups.check()  # the last one switched and archived too
    again = ThrowawayBackups(cluster)
    try:
        again.pgbackrest("stanza-create")
        seconds = []
        for name in segment_names(first, last):
            segment = again.root / name
            backups.pgbackrest("archive-get", arguments=(name, str(segment)))
            start = time.perf_counter()
            again.pgbackrest("archive-push", arguments=(str(segment),))
            seconds.append(time.perf_counter() - start)
            segment.unlink()
        return seconds
    finally:
        again.remove()


def segment_names(first: str, last: str) -> list[str]:
    """The WAL segments' names from `first` to `last` (one timeline; 16 MB segments: 256 to
    a log file)."""
    timeline, number, last_number = first[:8], int(first[8:], 16), int(last[8:], 16)
    names = []
    while number <= last_number:
        log, segment = divmod(number, 0x100000000)
        names.append(f"{timeline}{log:08X}{segment:08X}")
        number += 1 if segment < 0xFF else 0x100000000 - 0xFF
    return names


def commit_milliseconds(cluster: ThrowawayPostgres, commits: int = 300) -> float:
    """A one-row INSERT's time, committed (autocommit), one client alone: what a write waits
    for its flush, and the receiver's; the median of `commits`."""
    times = []
    with connect(cluster) as db:
        db.execute("CREATE TABLE IF NOT EXISTS committed (at timestamptz DEFAULT now())")
        for _ in range(commits):
            start = time.perf_counter()
            db.execute("INSERT INTO committed DEFAULT VALUES")
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def cluster_of(
    stack: ExitStack, configuration: str
) -> tuple[ThrowawayPostgres, ThrowawayBackups | None]:
    cluster = stack.enter_context(throwaway_postgres(durable=True))
    backups = None
    if configuration != "archiving off":
        backups = stack.enter_context(throwaway_backups(cluster))
    if configuration == "zero-loss":
        stack.enter_context(wal_receiver(cluster))
    return cluster, backups


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
        servers = {each: cluster_of(stack, each) for each in CONFIGURATIONS}
        clusters = {each: cluster for each, (cluster, _) in servers.items()}
        scripts = {each: post_item_script(cluster) for each, cluster in clusters.items()}
        rates: dict[str, list[float]] = {each: [] for each in CONFIGURATIONS}
        archiving, backups = servers["archiving"]
        since = wal_position(archiving)
        # Interleaved: the machine's speed drifts, and each gets its share of every phase.
        for _ in range(arguments.runs):
            for each, cluster in clusters.items():
                url = cluster.url(DEFAULT_POSTGRES_DRIVER)
                with serve(API, url) as (base_url, _master):
                    rates[each].append(
                        requests_per_second(base_url, "/item", arguments.seconds, scripts[each])
                    )
        with connect(archiving) as db:
            wal_bytes = db.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (since,)
            ).fetchone()[0]
        pushes = push_seconds(archiving, backups, since)
        commit_ms = {each: [] for each in CONFIGURATIONS}
        for _ in range(3):  # interleaved, the best of each
            for each, cluster in clusters.items():
                commit_ms[each].append(commit_milliseconds(cluster))
    off = rates["archiving off"]
    for each in CONFIGURATIONS:
        # Each run against the run of archiving off in the same round, moments apart: the
        # machine's drift between rounds (shared, it can be 2x) cancels out.
        paired = statistics.median(rate / base for rate, base in zip(rates[each], off, strict=True))
        print(
            f"{each:>13}: POST /item {statistics.median(rates[each]):.0f} req/s, ratio "
            f"{paired:.3f} (median of each round's)   (runs: {[round(r) for r in rates[each]]}); "
            f"a commit alone {min(commit_ms[each]):.2f} ms"
        )
    per_request = float(wal_bytes) / (sum(rates["archiving"]) * arguments.seconds)
    loaded_seconds = arguments.runs * arguments.seconds
    print(
        f"archiving: {per_request:.0f} bytes of WAL a POST /item, a full segment every "
        f"{SEGMENT_BYTES / per_request:.0f} requests (else archive_timeout's switch, 60 s); "
        f"{len(pushes)} segments archived in {loaded_seconds} s of load, archive-push "
        f"{statistics.median(pushes) * 1000:.0f} ms each (median), all of them "
        f"{sum(pushes) / loaded_seconds / (os.cpu_count() or 1):.2%} of the machine's "
        f"{os.cpu_count()} cores over the load"
    )
    print("goal: archiving's ratio >= 0.95")


if __name__ == "__main__":
    main()
