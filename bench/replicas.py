"""Reads on a hot standby (DATABASE_REPLICA_URLS), against the API without one, on a primary
and a standby streaming from it (both on this machine, as the API's workers are):

1. read throughput: GET /store/<id> under wrk, with the replica and without, runs
   interleaved; and under that read-only load, the share of reads the primary served
   (goal: at most 10 %), from the API's own counts (database_reads_total);
2. write latency: POST /store one after another, without the replica, with it, and with
   its replay paused (goal: at most 1.1 x); and a minute of paused replay, each write read
   back by its writer's token (goal: every one found);
3. the purge of a store of ITEMS items with the standby streaming: the standby's replay lag
   throughout (goal: under 1 s), and the purge's rows per second against a raw DELETE's,
   each vacuumed first (goal: at least 0.8), and straight after a raw DELETE of as many rows
   whose dead rows autovacuum is cleaning.

`.venv/bin/python bench/replicas.py` (part of `make bench`); starts its own servers.
"""

import argparse
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import requests
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from bench.deletion import settle  # noqa: E402
from bench.run import (  # noqa: E402
    JWT_SECRET,
    admin_token_maker,
    dsn,
    requests_per_second,
    seed_store,
    serve,
)
from config.settings import DEFAULT_POSTGRES_DRIVER, Settings  # noqa: E402
from jobs.purge import purge_expired  # noqa: E402
from replication.replicas import lsn  # noqa: E402
from tools.gunicorn_server import API  # noqa: E402
from tools.throwaway_postgres import throwaway_postgres  # noqa: E402

PAUSED_SECONDS = 60


def counted_by(base_url: str, name: str, label: str) -> dict[str, float]:
    """The server's counter `name` (summed over its workers), by the value of `label`."""
    exposed = requests.get(f"{base_url}/metrics", timeout=10).text
    return {
        sample.labels[label]: sample.value
        for family in text_string_to_metric_families(exposed)
        for sample in family.samples
        if sample.name == name
    }


def reads_by_database(base_url: str) -> dict[str, float]:
    return counted_by(base_url, "database_reads_total", "database")


def bench_reads(primary_url: str, replica_url: str, store_id: int, runs: int, seconds: int):
    rates: dict[str, list[float]] = {"without": [], "with": []}
    shares = []
    for _ in range(runs):
        for setup, variables in (("without", {}), ("with", {"DATABASE_REPLICA_URLS": replica_url})):
            with serve(API, primary_url, **variables) as (base_url, _master):
                requests.get(f"{base_url}/store/{store_id}", timeout=10)  # the checks start
                time.sleep(2)  # and have seen the standby caught up
                before = reads_by_database(base_url)
                rates[setup].append(requests_per_second(base_url, f"/store/{store_id}", seconds))
                if setup == "with":
                    after = reads_by_database(base_url)
                    served = {name: after[name] - before.get(name, 0) for name in after}
                    shares.append(served.get("primary", 0) / sum(served.values()))
    without, with_replica = (statistics.median(rates[setup]) for setup in rates)
    share = max(shares)
    print(
        f"  GET /store/<id>: {without:.0f} req/s without a replica, {with_replica:.0f} with one "
        f"(ratio {with_replica / without:.2f}); the primary served {share:.1%} of the reads "
        f"(the most of {runs} runs)\n  (runs: {rates})",
        flush=True,
    )
    return share


def bench_writes(
    standby_dsn: str, primary_url: str, replica_url: str, headers, writes: int, runs: int
) -> float:
    """Median POST latency without a replica, with one, and with its replay paused."""
    latencies: dict[str, list[float]] = {"without": [], "with": [], "paused": []}
    replicated = {"DATABASE_REPLICA_URLS": replica_url}
    for run in range(runs):
        for setup, variables in (("without", {}), ("with", replicated), ("paused", replicated)):
            with (
                serve(API, primary_url, "--workers", "1", **variables) as (base_url, _master),
                requests.Session() as session,
                psycopg.connect(standby_dsn, autocommit=True) as standby,
            ):
                if setup == "paused":
                    standby.execute("SELECT pg_wal_replay_pause()")
                session.headers.update(headers())
                session.get(f"{base_url}/store", timeout=10)
                for number in range(writes):
                    started = time.perf_counter()
                    session.post(
                        f"{base_url}/store", json={"name": f"{setup} {run} {number}"}, timeout=10
                    ).raise_for_status()
                    latencies[setup].append(time.perf_counter() - started)
                standby.execute("SELECT pg_wal_replay_resume()")
    without, with_replica, paused = (statistics.median(latencies[setup]) for setup in latencies)
    p99 = {setup: statistics.quantiles(values, n=100)[98] for setup, values in latencies.items()}
    print(
        f"  POST /store: median {without * 1000:.2f} ms without a replica, "
        f"{with_replica * 1000:.2f} ms with one (ratio {with_replica / without:.2f}), "
        f"{paused * 1000:.2f} ms with its replay paused (ratio {paused / without:.2f}); p99 "
        f"{p99['without'] * 1000:.2f}, {p99['with'] * 1000:.2f} and {p99['paused'] * 1000:.2f} ms",
        flush=True,
    )
    return max(with_replica, paused) / without


def bench_a_paused_minute(standby_dsn: str, primary_url: str, replica_url: str, headers) -> dict:
    """A writer creating stores for PAUSED_SECONDS with the standby's replay paused, reading
    each back by its token, and an anonymous reader of the first: latencies, and answers."""
    env = {"DATABASE_REPLICA_URLS": replica_url}
    with (
        serve(API, primary_url, "--workers", "2", **env) as (base_url, _master),
        requests.Session() as writer,
        psycopg.connect(standby_dsn, autocommit=True) as standby,
    ):
        writer.headers.update(headers())
        first = writer.post(f"{base_url}/store", json={"name": "before the pause"}, timeout=10)
        for _ in range(20):  # each worker's checks start, with its first GET
            requests.get(f"{base_url}/store", timeout=10)
        time.sleep(2)  # and have seen the store replayed
        standby.execute("SELECT pg_wal_replay_pause()")
        latencies, read_back, anonymous = [], [], []
        until = time.monotonic() + PAUSED_SECONDS
        while time.monotonic() < until:
            started = time.perf_counter()
            created = writer.post(
                f"{base_url}/store", json={"name": f"paused {len(latencies)}"}, timeout=10
            )
            latencies.append(time.perf_counter() - started)
            found = writer.get(f"{base_url}/store/{created.json()['id']}", timeout=10)
            read_back.append(found.status_code)
            path = f"{base_url}/store/{first.json()['id']}"
            anonymous.append(requests.get(path, timeout=10).status_code)
        standby.execute("SELECT pg_wal_replay_resume()")
        fallbacks = counted_by(base_url, "database_read_fallbacks_total", "reason")
    lagging = fallbacks.get("lag", 0)
    print(
        f"  {PAUSED_SECONDS} s with replay paused: {len(latencies)} writes, median "
        f"{statistics.median(latencies) * 1000:.2f} ms, p99 "
        f"{statistics.quantiles(latencies, n=100)[98] * 1000:.2f} ms; the writer read "
        f"{read_back.count(200)} of them back by its token (other answers: "
        f"{sorted(set(read_back) - {200})}); anonymous reads {sorted(set(anonymous))}, "
        f"{lagging:.0f} sent to the primary once the standby was past the maximum lag",
        flush=True,
    )
    return {"read_back": read_back, "median": statistics.median(latencies)}


class LagWatch:
    """The standby's replay lag, every 50 ms: how long ago the primary had written no more than
    the standby has replayed (the API's own measure, finer), and PostgreSQL's replay_lag."""

    def __init__(self, primary: str, standby: str) -> None:
        self.primary, self.standby = primary, standby
        self.worst = self.worst_reported = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watch)

    def __enter__(self) -> "LagWatch":
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop.set()
        self.thread.join()

    def watch(self) -> None:
        samples: list[tuple[float, int]] = []
        with (
            psycopg.connect(self.primary, autocommit=True) as primary,
            psycopg.connect(self.standby, autocommit=True) as standby,
        ):
            while not self.stop.is_set():
                now = time.monotonic()
                written, reported = primary.execute(
                    "SELECT pg_current_wal_insert_lsn()::text, "
                    "(SELECT extract(epoch FROM max(replay_lag)) FROM pg_stat_replication)"
                ).fetchone()
                samples.append((now, lsn(written)))
                replayed = standby.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()[0]
                replayed = lsn(replayed)
                newest = max((t for t, position in samples if position <= replayed), default=now)
                self.worst = max(self.worst, time.monotonic() - newest)
                self.worst_reported = max(self.worst_reported, float(reported or 0))
                time.sleep(0.05)


def bench_purge(primary_url: str, standby_dsn: str, items: int) -> dict[str, float]:
    app = create_app(Settings(database_url=primary_url, jwt_secret_key=JWT_SECRET))
    primary = dsn(primary_url)
    figures = {}
    with psycopg.connect(primary, autocommit=True) as connection:
        store = seed_store(connection, "raw", items, 100)
        settle(connection)
        with LagWatch(primary, standby_dsn) as raw_lag:
            started = time.perf_counter()
            connection.execute("DELETE FROM stores WHERE id = %s", (store,))
            figures["raw_s"] = time.perf_counter() - started
            time.sleep(1)
        for order in ("vacuumed", "after_delete"):
            store = seed_store(connection, order, items, 100)
            settle(connection)
            if order == "after_delete":
                other = seed_store(connection, "deleted first", items, 100)
                connection.execute("DELETE FROM stores WHERE id = %s", (other,))
            now = datetime.now(UTC)
            connection.execute(
                "UPDATE stores SET deleted_at = %s, expire_time = %s WHERE id = %s",
                (now, now, store),
            )
            with LagWatch(primary, standby_dsn) as lag, app.app_context():
                started = time.perf_counter()
                purge_expired()
                figures[f"{order}_s"] = time.perf_counter() - started
            figures[f"{order}_lag"] = lag.worst
            figures[f"{order}_reported_lag"] = lag.worst_reported
    after_delete = figures["raw_s"] / figures["after_delete_s"]
    print(
        f"  {items:,} items: raw DELETE {figures['raw_s']:.2f} s (replay lag up to "
        f"{raw_lag.worst:.2f} s); purge, vacuumed first, {figures['vacuumed_s']:.2f} s "
        f"(rows/s {figures['raw_s'] / figures['vacuumed_s']:.2f} x the raw DELETE's; replay lag "
        f"up to {figures['vacuumed_lag']:.2f} s, PostgreSQL's replay_lag up to "
        f"{figures['vacuumed_reported_lag']:.2f} s); purge straight after a raw DELETE "
        f"{figures['after_delete_s']:.2f} s (rows/s {after_delete:.2f} x; replay lag up to "
        f"{figures['after_delete_lag']:.2f} s)",
        flush=True,
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--writes", type=int, default=300)
    arguments = parser.parse_args()
    with throwaway_postgres() as cluster, throwaway_postgres(standby_of=cluster) as standby:
        primary_url = cluster.url(DEFAULT_POSTGRES_DRIVER)
        replica_url = standby.url(DEFAULT_POSTGRES_DRIVER)
        headers = admin_token_maker(primary_url)
        with psycopg.connect(dsn(primary_url), autocommit=True) as connection:
            store_id = seed_store(connection, "read", 10, 3)
        print("Reads with a replica and without:", flush=True)
        share = bench_reads(primary_url, replica_url, store_id, arguments.runs, arguments.seconds)
        print("Writes with a replica and without:", flush=True)
        write_ratio = bench_writes(
            dsn(replica_url), primary_url, replica_url, headers, arguments.writes, arguments.runs
        )
        paused = bench_a_paused_minute(dsn(replica_url), primary_url, replica_url, headers)
        print("Purging with the standby streaming:", flush=True)
        purge = bench_purge(primary_url, dsn(replica_url), arguments.items)
    goals = {
        "the primary serves at most 10 % of a read-only load": share <= 0.10,
        "write latency with a replica (replaying or paused) <= 1.1 x without": write_ratio <= 1.1,
        "a minute of paused replay: the writer reads every write back": set(paused["read_back"])
        == {200},
        "replay lag under 1 s during the purge": purge["vacuumed_lag"] < 1.0,
        "purge >= 0.8 x a raw DELETE's rows per second, each vacuumed first": (
            purge["raw_s"] / purge["vacuumed_s"] >= 0.8
        ),
    }
    print("Goals:")
    for goal, met in goals.items():
        print(f"  [{'met' if met else 'NOT MET'}] {goal}")


if __name__ == "__main__":
    main()
