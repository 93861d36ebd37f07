"""Catalogue import and export against PostgreSQL's own COPY, side by side in one run.

`.venv/bin/python bench/import_export.py [--items N] [--driver psycopg2|psycopg]
[--pgbouncer] [--pinned]` (part of `make bench`); starts its own PostgreSQL (and PgBouncer,
for the API's side only). Each item has two tags of 100; the file is JSON Lines. Each side writes
into the same empty tables (COPY's rows are truncated before the import: writes slow down
as the tables grow), vacuumed.

- import: COPY FROM of the same rows (items with ids, then their links, the tags there
  already) against the worker's run of an import (catalogue.runs.run_import) of the file;
  and how much the process's peak RSS grew while it ran.
- export: COPY TO of the items and their links, and COPY TO of the export's own statement,
  against GET /store/<id>/item/export's lines (catalogue.exporting) read to the end.
"""

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from bench.run import (  # noqa: E402
    JWT_SECRET,
    admin_token_maker,
    dsn,
    requests_per_second,
    seed_store,
    serve,
)
from catalogue.exporting import export_sql, exported_lines  # noqa: E402
from catalogue.lines import JSON_LINES  # noqa: E402
from catalogue.runs import keep_file, run_import  # noqa: E402
from config.settings import Settings  # noqa: E402
from db import db  # noqa: E402
from models import ItemImportModel  # noqa: E402
from tools.gunicorn_server import API  # noqa: E402
from tools.throwaway_postgres import (  # noqa: E402
    ThrowawayPostgres,
    throwaway_pgbouncer,
    throwaway_postgres,
)

TAGS = 100
READ_SECONDS = 5


def catalogue_file(items: int) -> Path:
    path = Path(tempfile.mkstemp(suffix=".jsonl")[1])
    with path.open("w") as out:
        for n in range(items):
            tags = [f"tag {n % TAGS}", f"tag {(n + 1) % TAGS}"]
            item = {"name": f"item {n}", "price": n % 1000 + 0.99, "tags": tags}
            if n % 2:
                item["description"] = f"The description of item {n}."
            out.write(json.dumps(item) + "\n")
    return path


class PeakRss:
    """The process's largest resident set while a block runs, above what it was before
    (MiB), sampled: ru_maxrss would count the file this benchmark built beforehand."""

    def __enter__(self) -> "PeakRss":
        self.before = self.peak = rss_mib()
        self.running = True
        self.sampler = threading.Thread(target=self.sample, daemon=True)
        self.sampler.start()
        return self

    def sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_mib())
            time.sleep(0.05)

    def __exit__(self, *_exc) -> None:
        self.running = False
        self.sampler.join()
        self.growth = self.peak - self.before


def rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) / 1024


def vacuumed(connection: psycopg.Connection) -> None:
    connection.execute("VACUUM ANALYZE")
    connection.execute("CHECKPOINT")


def copy_from(connection: psycopg.Connection, items: int) -> float:
    """Seconds to COPY the file's rows into a new store with its tags."""
    store = connection.execute("INSERT INTO stores (name) VALUES ('copy') RETURNING id").fetchone()
    tag_ids = [
        row[0]
        for row in connection.execute(
            "INSERT INTO tags (name, store_id) SELECT 'tag ' || n, %s FROM generate_series(0, %s) n"
            " RETURNING id",
            (store[0], TAGS - 1),
        )
    ]
    first = connection.execute(
        "SELECT nextval(pg_get_serial_sequence('items', 'id')) FROM generate_series(1, %s)",
        (items,),
    ).fetchall()[0][0]
    item_rows = "".join(
        f"{first + n}\titem {n}\t{n % 1000 + 0.99}\t"
        f"{f'The description of item {n}.' if n % 2 else chr(92) + 'N'}\t{store[0]}\n"
        for n in range(items)
    ).encode()
    link_rows = "".join(
        f"{first + n}\t{tag_ids[n % TAGS]}\n{first + n}\t{tag_ids[(n + 1) % TAGS]}\n"
        for n in range(items)
    ).encode()
    vacuumed(connection)
    started = time.perf_counter()
    with connection.transaction(), connection.cursor() as cursor:
        for into, rows in (
            ("items (id, name, price, description, store_id)", item_rows),
            ("items_tags (item_id, tag_id)", link_rows),
        ):
            with cursor.copy(f"COPY {into} FROM STDIN") as copy:
                for start in range(0, len(rows), 1 << 20):
                    copy.write(rows[start : start + (1 << 20)])
    return time.perf_counter() - started


BACKEND = "SELECT pg_backend_pid()"


def on_cpu(cpu: int, pid: int = 0) -> None:
    """Run process (or, on Linux, thread) `pid` on `cpu` only; 0: the calling thread, which
    the threads and processes it starts inherit."""
    os.sched_setaffinity(pid, {cpu})


def all_on_cpu_0(cluster: ThrowawayPostgres) -> None:
    """PostgreSQL (its backends to come too) and this thread, with what it starts: the API
    and wrk."""
    postmaster = cluster.postmaster_pid()
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    for pid in (postmaster, *map(int, children), 0):
        on_cpu(0, pid)


def emptied(connection: psycopg.Connection) -> None:
    """The tables as COPY found them: COPY's links ran 1.24 x slower into tables already
    holding 200,000 items and their links, which would count against the import."""
    connection.execute("TRUNCATE items_tags, items, tags")


# wrk's connections: as many as saturate the machine, and one, a client alone.
READERS = (16, 1)


def reads_beside(run: Callable[[], object], url: str, seconds: int) -> list[tuple[float, float]]:
    """Requests per second of GET `url` (wrk) alone, then while `run` runs (measured from
    `seconds` after it started, when the import is writing), for each of READERS."""
    alone = [requests_per_second(url, "", seconds, connections=n) for n in READERS]
    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(seconds)
    beside = [requests_per_second(url, "", seconds, connections=n) for n in READERS]
    worker.join()
    return list(zip(alone, beside, strict=True))


def imported(
    app, connection: psycopg.Connection, path: Path, reads_url: str, pinned: bool
) -> tuple[float, float, int, float, list[tuple[float, float]]]:
    """Seconds of the worker's run of the import, its peak RSS growth (MiB), the store, the
    seconds the request took to keep the file, and reads per second of `reads_url` alone and
    beside the import, for each of READERS. `pinned`: the import's thread, those it starts
    and its database backend on CPU 1, everything else on CPU 0."""
    with app.app_context():
        store = connection.execute(
            "INSERT INTO stores (name) VALUES ('import') RETURNING id"
        ).fetchone()[0]
        item_import = ItemImportModel(
            store_id=store, media_type=JSON_LINES, size=path.stat().st_size,
            created_at=datetime.now(UTC),
        )  # fmt: skip
        db.session.add(item_import)
        db.session.flush()
        started = time.perf_counter()
        with path.open("rb") as body:
            keep_file(item_import, body)
        db.session.commit()
        taking = time.perf_counter() - started
        vacuumed(connection)
        import_id, timing = item_import.id, {}

        def run() -> None:
            with app.app_context(), PeakRss() as rss:
                if pinned:
                    on_cpu(1)
                    on_cpu(1, db.session.connection().exec_driver_sql(BACKEND).scalar())
                started = time.perf_counter()
                assert run_import(import_id)
                timing["seconds"] = time.perf_counter() - started
            timing["rss"] = rss.growth

        # wrk takes some CPU for 2 x READ_SECONDS of the import's run: it costs the import a few %.
        reads = reads_beside(run, reads_url, READ_SECONDS)
        db.session.expire_all()  # it ran in another session
        assert db.session.get(ItemImportModel, import_id).state == "succeeded"
        return timing["seconds"], timing["rss"], store, taking, reads


def copy_to(connection: psycopg.Connection, statements: list[str]) -> float:
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for statement in statements:
            with cursor.copy(f"COPY ({statement}) TO STDOUT") as copy:
                for _data in copy:
                    pass
    return time.perf_counter() - started


def exported(app, store: int) -> tuple[float, int]:
    with app.app_context():
        started = time.perf_counter()
        size = sum(len(lines) for lines in exported_lines(store, JSON_LINES))
        return time.perf_counter() - started, size


@contextmanager
def through_pgbouncer(url: str) -> Iterator[str]:
    """`url` through PgBouncer, configured as docker-compose.yml runs it (its pool size too)."""
    with throwaway_pgbouncer(make_url(url), pool_size=20) as port:
        yield make_url(url).set(port=port).render_as_string(hide_password=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--driver", default="psycopg2", choices=("psycopg2", "psycopg"))
    parser.add_argument(
        "--pgbouncer", action="store_true", help="the API through PgBouncer (COPY straight)"
    )
    parser.add_argument(
        "--pinned", action="store_true",
        help="the import (its threads and backend) on CPU 1, all else on CPU 0: reads beside"
        " an import that has a core of its own, as on a bigger machine",
    )  # fmt: skip
    args = parser.parse_args()
    path = catalogue_file(args.items)
    path_size = path.stat().st_size
    with throwaway_postgres() as cluster, ExitStack() as stack:
        url = cluster.url(args.driver)
        admin_token_maker(url)  # migrates
        url = stack.enter_context(through_pgbouncer(url)) if args.pgbouncer else url
        app = create_app(Settings(database_url=url, jwt_secret_key=JWT_SECRET))
        rows = args.items * 3  # each item and its two links
        with psycopg.connect(dsn(url), autocommit=True) as connection:
            copy_seconds = copy_from(connection, args.items)
            emptied(connection)
            other = seed_store(connection, "read beside the import", 10, 3)
            if args.pinned:
                all_on_cpu_0(cluster)
            with serve(API, url) as (base_url, _master):
                import_seconds, rss_growth, store, taking, reads = imported(
                    app, connection, path, f"{base_url}/store/{other}", args.pinned
                )
            vacuumed(connection)
            raw_out = copy_to(connection, [
                f"SELECT id, name, price, description FROM items WHERE store_id = {store}",
                "SELECT it.item_id, it.tag_id FROM items_tags it JOIN items i ON i.id = it.item_id"
                f" WHERE i.store_id = {store}",
            ])  # fmt: skip
            statement = export_sql("postgresql", JSON_LINES) % {"store_id": store}
            statement_out = copy_to(connection, [statement])
            export_seconds, size = exported(app, store)
    path.unlink()
    through = " through PgBouncer" if args.pgbouncer else ""
    through += ", the import on a CPU of its own" if args.pinned else ""
    print(f"{args.items:,} items, {rows:,} rows with their links, {args.driver}{through}")
    print(f"import:  COPY FROM {copy_seconds:6.1f} s  ({rows / copy_seconds:9,.0f} rows/s)")
    print(f"         the import {import_seconds:5.1f} s  ({rows / import_seconds:9,.0f} rows/s)")
    print(f"         ratio {copy_seconds / import_seconds:.2f} of COPY's rows/s (goal >= 0.5)")
    print(f"         peak RSS grew {rss_growth:.0f} MiB (goal < 64)")
    for readers, (alone, beside) in zip(READERS, reads, strict=True):
        print(f"         GET /store/<another>, {readers:2} connections: {alone:,.0f} req/s alone,"
              f" {beside:,.0f} beside the import ({beside / alone:.2f})")  # fmt: skip
    file_mib = path_size / 2**20
    print(f"         the request kept the file ({file_mib:.0f} MiB) in {taking:.1f} s")
    print(f"export:  COPY TO items and links {raw_out:5.1f} s;"
          f" COPY TO of the export's statement {statement_out:5.1f} s")  # fmt: skip
    print(f"         the export {export_seconds:5.1f} s ({size / 2**20:.0f} MiB)")
    print(f"         ratio {raw_out / export_seconds:.2f} of COPY TO's rows/s (goal >= 0.5);"
          f" {statement_out / export_seconds:.2f} of COPY TO of its statement")  # fmt: skip


if __name__ == "__main__":
    main()
