"""Deleting a store, against its size: the seed's ORM cascade, one raw SQL DELETE, and the
API (the answer to DELETE /store/<id>, then the purge that removes the rows), the best of
a few runs each (the ORM's once; at a million items once). Prints a
table, the goals, and draws docs/deletion-times.png.

`.venv/bin/python bench/deletion.py` (part of `make bench`); starts its own PostgreSQL.

Stores of each size have as many items and 100 tags, each item linked to one tag, built in
SQL. The seed's cascade (`lazy="dynamic", cascade="all, delete"`, no passive_deletes) loads
every item and deletes it by itself: it runs up to ORM_UP_TO items only.
"""

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import matplotlib
import psycopg
import requests
from sqlalchemy import Column, ForeignKey, Integer, Table, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from bench.run import JWT_SECRET, admin_token_maker, dsn, seed_store, serve  # noqa: E402
from config.settings import DEFAULT_POSTGRES_DRIVER, Settings  # noqa: E402
from jobs.purge import purge_expired  # noqa: E402
from tools.gunicorn_server import API  # noqa: E402
from tools.throwaway_postgres import throwaway_postgres  # noqa: E402

matplotlib.use("Agg")  # files only, no display
from matplotlib import pyplot  # noqa: E402

CHART = ROOT / "docs" / "deletion-times.png"
ORM_UP_TO = 100_000
# This machine's speed drifts by tens of percent over seconds: the best of a few runs.
PURGE_REPEATS_UP_TO = 100_000
TAGS = 100


class Seed(DeclarativeBase):
    """The seed project's models, as they were, on the same tables."""


links = Table(
    "items_tags",
    Seed.metadata,
    Column("item_id", ForeignKey("items.id"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id"), primary_key=True),
)


class SeedStore(Seed):
    __tablename__ = "stores"
    id: Mapped[int] = mapped_column(primary_key=True)
    items = relationship("SeedItem", back_populates="store", lazy="dynamic", cascade="all, delete")
    tags = relationship("SeedTag", back_populates="store", lazy="dynamic", cascade="all, delete")


class SeedItem(Seed):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    store_id = Column(Integer, ForeignKey("stores.id"))
    store = relationship("SeedStore", back_populates="items")
    tags = relationship("SeedTag", secondary=links, back_populates="items")


class SeedTag(Seed):
    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(primary_key=True)
    store_id = Column(Integer, ForeignKey("stores.id"))
    store = relationship("SeedStore", back_populates="tags")
    items = relationship("SeedItem", secondary=links, back_populates="tags")


def seconds(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def orm_cascade(url: str, store_id: int) -> None:
    with Session(create_engine(url)) as session:
        session.delete(session.get(SeedStore, store_id))
        session.commit()


def bench_deletion(database_url: str, admin_headers, sizes: list[int], repeats: int) -> list[dict]:
    """Per size: seconds of the seed's ORM cascade (once), and the best of `repeats` (of one
    past PURGE_REPEATS_UP_TO items) of a raw DELETE, the API's answer and its purge, runs
    interleaved; the purge's rows per second against the raw DELETE's."""
    app = create_app(Settings(database_url=database_url, jwt_secret_key=JWT_SECRET))
    results = []
    with (
        psycopg.connect(dsn(database_url), autocommit=True) as connection,
        serve(API, database_url, "--workers", "1") as (base_url, _master),
    ):
        warm_up = seed_store(connection, "warm-up", 10, 1)  # the worker's first request
        delete(f"{base_url}/store/{warm_up}", admin_headers())
        for size in sizes:
            row = {"items": size}
            if size <= ORM_UP_TO:
                store = seed_store(connection, f"orm {size}", size, TAGS)
                row["orm_s"] = seconds(lambda store=store: orm_cascade(database_url, store))
            runs = {"raw_s": [], "api_s": [], "purge_s": []}
            for repeat in range(repeats if size <= PURGE_REPEATS_UP_TO else 1):
                store = seed_store(connection, f"raw {size} {repeat}", size, TAGS)
                settle(connection)
                runs["raw_s"].append(
                    seconds(
                        lambda store=store: connection.execute(
                            "DELETE FROM stores WHERE id = %s", (store,)
                        )
                    )
                )
                store = seed_store(connection, f"api {size} {repeat}", size, TAGS)
                settle(connection)
                url, headers = f"{base_url}/store/{store}", admin_headers()
                runs["api_s"].append(seconds(lambda url=url, headers=headers: delete(url, headers)))
                connection.execute(
                    "UPDATE stores SET expire_time = %s WHERE id = %s", (datetime.now(UTC), store)
                )
                with app.app_context():
                    runs["purge_s"].append(seconds(purge_expired))
            row |= {key: min(measured) for key, measured in runs.items()}
            row["purge_vs_raw"] = row["raw_s"] / row["purge_s"]
            results.append(row)
            orm = f"{row['orm_s']:8.3f} s" if "orm_s" in row else "     -    "
            print(
                f"  {size:>9,} items: seed's ORM cascade {orm}, raw DELETE {row['raw_s']:7.3f} s,"
                f" API answer {row['api_s'] * 1000:6.1f} ms, purge {row['purge_s']:7.3f} s "
                f"(rows/s {row['purge_vs_raw']:.2f} x raw DELETE's)",
                flush=True,
            )
    draw(results)
    return results


def settle(connection: psycopg.Connection) -> None:
    """Start each timed delete from the same state: no dead rows of the last one left to
    vacuum meanwhile (autovacuum competes for the CPU), the new rows' hint bits set (their
    first reader would write them), no dirty pages to write."""
    connection.execute("VACUUM (ANALYZE) items, items_tags, tags, stores")
    connection.execute("CHECKPOINT")


def delete(url: str, headers: dict[str, str]) -> None:
    response = requests.delete(url, headers=headers, timeout=600)
    response.raise_for_status()


def draw(results: list[dict]) -> None:
    figure, axes = pyplot.subplots(figsize=(8, 5), dpi=100)
    sizes = [row["items"] for row in results]
    for key, label, style in (
        ("orm_s", "seed's ORM cascade (DELETE answered)", "s-"),
        ("raw_s", "one raw SQL DELETE", "o-"),
        ("purge_s", "API: background purge, in batches", "^-"),
        ("api_s", "API: DELETE answered (restorable)", "v-"),
    ):
        measured = [(row["items"], row[key]) for row in results if key in row]
        axes.plot(*zip(*measured, strict=True), style, label=label)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xticks(sizes, [f"{size:,}" for size in sizes])
    axes.set_xlabel("items in the store (each linked to one of 100 tags)")
    axes.set_ylabel("seconds")
    axes.set_title("Deleting a store on PostgreSQL")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(CHART)
    print(f"  chart: {CHART.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[10, 1_000, 10_000, 100_000, 1_000_000]
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per size, the best kept")
    arguments = parser.parse_args()
    with throwaway_postgres() as cluster:
        database_url = cluster.url(DEFAULT_POSTGRES_DRIVER)
        print("Deleting a store (one run per size):")
        results = bench_deletion(
            database_url, admin_token_maker(database_url), arguments.sizes, arguments.repeats
        )
    smallest, largest = results[0], results[-1]
    big = [row for row in results if row["items"] >= 100_000]
    goals = {
        f"DELETE answered at {largest['items']:,} items <= 2 x at {smallest['items']:,} + 10 ms": (
            largest["api_s"] <= 2 * smallest["api_s"] + 0.010
        ),
        "purge >= 0.8 x the rows per second of a raw DELETE (100,000 items and up)": all(
            row["purge_vs_raw"] >= 0.8 for row in big
        ),
    }
    print("Goals:")
    for goal, met in goals.items():
        print(f"  [{'met' if met else 'NOT MET'}] {goal}")


if __name__ == "__main__":
    main()
