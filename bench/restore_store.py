"""`flask restore-store`'s writing part against COPY's, on a store of a million items
(--items), side by side: the store is backed up with pgBackRest, purged, and the backup
restored to a server of its own (backups/restored.py); from there, into the live database,

1. `copy_store` (backups/store_copy.py): COPY into temporary tables, then one INSERT per
   table, ids kept where free (all of them, for a purged store), one transaction;
2. COPY's floor: the same rows streamed by COPY straight into the live tables (what a copy
   could do if it never had to look at an id), one transaction;

the live tables emptied again after each. Prints each one's median time and the ratio of their
speeds (goal: copy_store at least half of COPY's), and the restore's own time.

`.venv/bin/python bench/restore_store.py [--items 1000000] [--runs 3]`: starts its own
PostgreSQL, a repository in a temp dir. Figures: docs/benchmarks.md.
"""

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backups.restored import connect as connect_restored
from backups.store_copy import ROWS_OF_STORE, copy_store
from bench.run import admin_token_maker, seed_store
from tools.throwaway_backups import connect, throwaway_backups
from tools.throwaway_postgres import throwaway_postgres

LOGIN = {"user": "postgres", "dbname": "postgres"}


def copied_by_copy(source: psycopg.Connection, live: psycopg.Connection, store_id: int) -> None:
    """COPY's floor: the store row, then each table's rows streamed straight in."""
    with source.transaction(), live.transaction():
        name = source.execute("SELECT name FROM stores WHERE id = %s", (store_id,)).fetchone()
        live.execute("INSERT INTO stores (id, name) VALUES (%s, %s)", (store_id, *name))
        for table, rows in ROWS_OF_STORE.items():
            if table == "items_tags":  # as copy_store does: the links' checks need the stats
                live.execute("ANALYZE items, tags")
            selected = sql.SQL("COPY (SELECT * FROM {} WHERE {}) TO STDOUT").format(
                sql.Identifier(table), sql.SQL(rows)
            )
            into = sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(table))
            with (
                source.cursor().copy(selected, {"store_id": store_id}) as reading,
                live.cursor().copy(into) as writing,
            ):
                for block in reading:
                    writing.write(block)


def timed_then_emptied(
    copy, source: psycopg.Connection, live: psycopg.Connection, store_id: int
) -> float:
    """How long `copy` took; then the live tables emptied for the next run at once (a
    million items' cascading DELETE would take longer than the copy)."""
    started = time.perf_counter()
    copy(source, live, store_id)
    seconds = time.perf_counter() - started
    assert live.execute("SELECT count(*) FROM items WHERE store_id = %s", (store_id,)).fetchone()[0]
    live.execute("TRUNCATE stores CASCADE")  # its items, tags, links and imports
    live.execute("ANALYZE stores, items, tags, items_tags")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()
    with throwaway_postgres() as cluster, throwaway_backups(cluster) as backups:
        admin_token_maker(cluster.url())
        with connect(cluster) as live:
            store_id = seed_store(live, "restored", arguments.items, 100)
            backups.backup("full")
            time.sleep(1.1)  # a time after the backup's stop second
            at = datetime.now(UTC)
            live.execute("DELETE FROM stores WHERE id = %s", (store_id,))
            backups.check()
            started = time.perf_counter()
            with backups.restore(at) as server, connect_restored(server, LOGIN) as source:
                restored_in = time.perf_counter() - started
                ways = {"copy_store": copy_store, "COPY": copied_by_copy}
                times = {name: [] for name in ways}
                for _ in range(arguments.runs):
                    for name, way in ways.items():
                        times[name].append(timed_then_emptied(way, source, live, store_id))
    medians = {name: statistics.median(each) for name, each in times.items()}
    print(f"A store of {arguments.items:,} items, 100 tags and {arguments.items:,} links:")
    print(f"  restored to a time on a server of its own in {restored_in:.1f} s")
    for name, median in medians.items():
        print(f"  {name:>10}: {median:5.1f} s (runs: {', '.join(f'{t:.1f}' for t in times[name])})")
    ratio = medians["COPY"] / medians["copy_store"]
    verdict = "met" if ratio >= 0.5 else "NOT MET"
    print(f"[{verdict}] copy_store at {ratio:.2f} of COPY's speed (goal: at least 0.5)")


if __name__ == "__main__":
    main()
