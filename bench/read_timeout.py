"""What the statement timeout on reads costs: GET /store/<id> with each driver, the timeout
on (the default, 30 s, carried in each read's query string) and off (0), runs interleaved.

Two figures per run: requests per second under wrk, and the CPU time one request costs the
API's workers and PostgreSQL's backends together (from /proc). On a shared machine both
drift ±15 % from run to run (two runs of the same server differ by as much), too much to see
3 %. So the timeout's own cost is also measured where it can be seen: the read's statement
through the driver, with and without the read engine's cursor class, best of many blocks;
that cost over the CPU time of a whole request is the throughput it can take.

`.venv/bin/python bench/read_timeout.py` (needs `wrk`); prints medians and ratios.
"""

import argparse
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import psycopg
import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import DRIVERS, requests_per_second, serve, store_to_read
from connections.options import cursor_with_timeout
from tools.gunicorn_server import API
from tools.throwaway_postgres import throwaway_postgres

TIMEOUTS = {"with": "30000", "without": "0"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds_of_children(*parents: int) -> dict[int, float]:
    """User + system CPU seconds of each process whose parent is one of `parents`."""
    seconds = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name (field 2) may hold spaces: the fields after it are split.
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) in parents:
            seconds[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return seconds


def measured(base_url: str, path: str, seconds: int, *parents: int) -> tuple[float, float]:
    """Requests per second, and CPU microseconds per request of the parents' children."""
    before = cpu_seconds_of_children(*parents)
    rate = requests_per_second(base_url, path, seconds)
    after = cpu_seconds_of_children(*parents)
    spent = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
    return rate, spent / (rate * seconds) * 1e6


def statement_microseconds(driver: str, port: int, store_id: int, timeout_ms: int) -> float:
    """Best of 40 blocks of 200: GET /store/<id>'s statement on an autocommit connection with
    the read engine's cursor class for `timeout_ms` (0: the driver's own cursor)."""
    # As the app connects: psycopg 3 prepares nothing (engine_options).
    connect = {
        "psycopg": partial(psycopg.connect, prepare_threshold=None),
        "psycopg2": psycopg2.connect,
    }[driver]
    cursor_class = cursor_with_timeout(driver, timeout_ms)
    options = {"cursor_factory": cursor_class} if cursor_class else {}
    connection = connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", **options)
    connection.autocommit = True
    cursor = connection.cursor()
    best = float("inf")
    for _ in range(40):
        start = time.perf_counter()
        for _ in range(200):
            cursor.execute("SELECT store_document(%s)", (store_id,))
            cursor.fetchall()
        best = min(best, (time.perf_counter() - start) / 200 * 1e6)
    connection.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="wrk runs per configuration")
    parser.add_argument("--seconds", type=int, default=10, help="length of one wrk run")
    arguments = parser.parse_args()

    with throwaway_postgres() as cluster:
        store_id = store_to_read(cluster, "read timeout")
        postmaster = cluster.postmaster_pid()
        runs = {(driver, kind): [] for driver in DRIVERS for kind in TIMEOUTS}
        # Interleaved: the machine's speed drifts, and each gets its share of every phase.
        for _ in range(arguments.runs):
            for driver, kind in runs:
                timeout = {"DATABASE_STATEMENT_TIMEOUT_MS": TIMEOUTS[kind]}
                with serve(API, cluster.url(driver), **timeout) as (base_url, master):
                    runs[driver, kind].append(
                        measured(
                            base_url, f"/store/{store_id}", arguments.seconds, master, postmaster
                        )
                    )
        statement = dict.fromkeys(runs, float("inf"))
        for _ in range(3):  # interleaved, the best of all
            for driver, kind in statement:
                microseconds = statement_microseconds(
                    driver, cluster.port, store_id, int(TIMEOUTS[kind])
                )
                statement[driver, kind] = min(statement[driver, kind], microseconds)
    for driver in DRIVERS:
        cost = statement[driver, "with"] - statement[driver, "without"]
        (rate_with, cpu_with), (rate_without, cpu_without) = (
            [statistics.median(column) for column in zip(*runs[driver, kind], strict=True)]
            for kind in TIMEOUTS
        )
        print(
            f"{driver:>8}: GET /store/<id> with the read timeout {rate_with:.0f} req/s and "
            f"{cpu_with:.0f} µs of CPU a request, without {rate_without:.0f} req/s and "
            f"{cpu_without:.0f} µs\n"
            f"          throughput ratio {rate_with / rate_without:.3f}, CPU-time ratio "
            f"{cpu_without / cpu_with:.3f} (goal for both: >= 0.97)\n"
            f"          the statement alone: {statement[driver, 'with']:.1f} µs with the "
            f"timeout, {statement[driver, 'without']:.1f} µs without; its cost over a request's "
            f"CPU time: ratio {cpu_without / (cpu_without + cost):.3f}\n"
            f"          runs with {runs[driver, 'with']}\n"
            f"          runs without {runs[driver, 'without']}"
        )


if __name__ == "__main__":
    main()
