"""Reads on a small and a big database: every read must cost what it returns, not what the
database holds. Used by bench/run.py.

"small": 1,000 stores of 10 items and 3 tags. "big": the same, plus in store 1 a million
more items, 20,000 more tags, 100,000 items linked to tag 1, and item 1 linked to every
tag of its store; and a deleted store, not yet purged, of a million items, first in store
order. Both built in SQL, in two databases of one cluster.
"""

import re
import statistics
import time
from pathlib import Path

import flask_migrate
import psycopg
import requests

from app import create_app
from config.settings import Settings
from tools.throwaway_postgres import ThrowawayPostgres

ROOT = Path(__file__).resolve().parent.parent
SMALL = """
    INSERT INTO stores (name) SELECT 'Store ' || n FROM generate_series(1, 1000) n;
    INSERT INTO items (name, price, store_id)
        SELECT 'Item ' || n, 1.5, store.id FROM stores store, generate_series(1, 10) n
        ORDER BY store.id, n;
    INSERT INTO tags (name, store_id)
        SELECT 'Tag ' || n, store.id FROM stores store, generate_series(1, 3) n
        ORDER BY store.id, n;
"""
BIG = """
    INSERT INTO items (name, price, store_id)
        SELECT 'More ' || n, 2.5, 1 FROM generate_series(1, 1000000) n;
    INSERT INTO tags (name, store_id) SELECT 'More tag ' || n, 1 FROM generate_series(1, 20000) n;
    INSERT INTO items_tags (item_id, tag_id)
        SELECT id, 1 FROM items WHERE store_id = 1 ORDER BY id LIMIT 100000;
    INSERT INTO items_tags (item_id, tag_id)
        SELECT 1, id FROM tags WHERE store_id = 1 AND id <> 1;
    -- Deleted, not yet purged, and first in store order: no read may walk its rows.
    INSERT INTO stores (id, name, deleted_at, expire_time)
        VALUES (0, 'Deleted', now(), now() + interval '30 days');
    INSERT INTO items (name, price, store_id)
        SELECT 'Deleted ' || n, 3.5, 0 FROM generate_series(1, 1000000) n;
"""
READS = [
    "/store", "/store/1", "/tag/1", "/store/1/tag", "/item/1", "/item", "/item?store_id=1",
    "/store/1/item", "/store/1/item?page=100&page_size=100", "/tag/1/item", "/item/1/tag",
    "/store/1/item?after={last_item_but_100}&page_size=100",
]  # fmt: skip


def build(cluster: ThrowawayPostgres, name: str, statements: list[str]) -> str:
    """A new database `name` on the cluster, migrated and filled; its URL."""
    with psycopg.connect(cluster.url().replace("+psycopg", ""), autocommit=True) as server:
        server.execute(f"CREATE DATABASE {name}")
    url = cluster.url().rsplit("/", 1)[0] + f"/{name}"
    with create_app(Settings(database_url=url, jwt_secret_key="x" * 32)).app_context():
        flask_migrate.upgrade(directory=str(ROOT / "migrations"))
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as database:
        for statement in statements:
            database.execute(statement)
        database.execute("ANALYZE")
    return url


def last_item_but(url: str, count: int) -> int:
    with psycopg.connect(url.replace("+psycopg", "")) as database:
        return database.execute(
            "SELECT id FROM items WHERE store_id = 1 ORDER BY id DESC OFFSET %s LIMIT 1", (count,)
        ).fetchone()[0]


def time_read(base_url: str, path: str, repeats: int) -> tuple[float, int]:
    """Median seconds of `repeats` sequential GETs (after one to warm up), and the body size."""
    with requests.Session() as http:
        first = http.get(base_url + path)
        first.raise_for_status()
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            http.get(base_url + path).raise_for_status()
            timings.append(time.perf_counter() - start)
    return statistics.median(timings), len(first.content)


def workers_memory_mb(master_pid: int) -> float:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return (
        sum(
            int(re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())[1])
            for pid in children
        )
        / 1024
    )


def bench_reads_at_scale(cluster: ThrowawayPostgres, serve, repeats: int) -> dict:
    print("  building the small and the big database ...", flush=True)
    small = build(cluster, "small", [SMALL])
    big = build(cluster, "big", [SMALL, BIG])
    after = {"last_item_but_100": last_item_but(big, 100)}
    results, memory = {}, {}
    for name, url in (("small", small), ("big", big)):
        with serve(url) as (base_url, master):
            for path in READS:
                path = path.format(**after)
                results.setdefault(path, {})[name] = time_read(base_url, path, repeats)
            memory[name] = workers_memory_mb(master)
    goals_met = True
    for path, measured in results.items():
        (small_s, _), (big_s, big_bytes) = measured["small"], measured["big"]
        met = big_s <= 2 * small_s + 0.010 and big_bytes < 512 * 1024
        goals_met &= met
        print(
            f"  {path:<52} small {small_s * 1000:6.1f} ms, big {big_s * 1000:6.1f} ms, "
            f"ratio {big_s / small_s:4.2f}, body {big_bytes / 1024:6.1f} KiB"
            f"{'' if met else '   NOT MET'}"
        )
    print(
        f"  workers' memory after the reads (2 workers): small {memory['small']:.0f} MB, "
        f"big {memory['big']:.0f} MB"
    )
    return {"reads_met": goals_met, "memory_growth_mb": memory["big"] - memory["small"]}
