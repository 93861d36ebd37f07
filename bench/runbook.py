"""The runbook's restores (docs/operations.md, "Runbook: restores") timed on a database of a
million items (--items): one store of that many items, 100 tags and a link per item, backed
up in full by pgBackRest (zst, as deployed); then a later day's writes (a tenth of the items
changed, another store of 10,000 made), the time T noted, and the big store deleted (a purge's
million rows of WAL). Each restore as an operator runs it:

1. the whole database to the end of the archive (pgBackRest's restore into a new data
   directory, then PostgreSQL replays the archive and is promoted): the deleted store stays
   deleted;
2. the whole database to T: the store is there;
3. `flask restore-store STORE --at T` (the command itself, in a process of its own, as the
   restore service runs it): the store back in the live database, while it serves;

and `flask backup-window`. Prints each one's wall time.

`.venv/bin/python bench/runbook.py [--items 1000000]`: starts its own PostgreSQL, a repository
in a temp dir. Figures: docs/benchmarks.md ("Restores, as the runbook runs them").
"""

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import admin_token_maker, seed_store  # noqa: E402
from tools.throwaway_backups import STANZA, connect, throwaway_backups  # noqa: E402
from tools.throwaway_postgres import throwaway_postgres  # noqa: E402


@contextmanager
def timed(what: str, times: dict[str, float]) -> Iterator[None]:
    """Note how long the block took, under `what`."""
    started = time.perf_counter()
    yield
    times[what] = time.perf_counter() - started


def flask(*command: str, env: dict[str, str]) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "flask", *command], cwd=ROOT, env=env, capture_output=True,
        text=True,
    )  # fmt: skip
    if run.returncode:
        sys.exit(f"flask {' '.join(command)} failed:\n{run.stdout}{run.stderr}")
    return run.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    arguments = parser.parse_args()
    times: dict[str, float] = {}
    with throwaway_postgres() as cluster, throwaway_backups(cluster) as backups:
        admin_token_maker(cluster.url())
        with connect(cluster) as live:
            store_id = seed_store(live, "restored", arguments.items, 100)
            size = live.execute("SELECT pg_size_pretty(pg_database_size('postgres'))").fetchone()
            with timed("full backup", times):
                backups.backup("full")
            other = seed_store(live, "another", 10_000, 10)
            live.execute(
                "UPDATE items SET price = price + 1 WHERE store_id = %s AND id %% 10 = 0",
                (store_id,),
            )
            time.sleep(1.1)
            at = datetime.now(UTC)
            time.sleep(0.1)
            live.execute("DELETE FROM stores WHERE id = %s", (store_id,))
            backups.check()

        def items_of(server, store: int) -> int:
            with connect(server) as db:
                query = "SELECT count(*) FROM items WHERE store_id = %s"
                return db.execute(query, (store,)).fetchone()[0]

        with timed("whole database, to the end of the archive", times), backups.restore() as server:
            assert items_of(server, store_id) == 0
            assert items_of(server, other) == 10_000
        with timed("whole database, to a time", times), backups.restore(at) as server:
            assert items_of(server, store_id) == arguments.items

        env = {
            **os.environ,
            "FLASK_APP": "app:create_app",
            "DATABASE_URL": cluster.url(),
            "JWT_SECRET_KEY": "x" * 64,
            "ERASURE_LOG_PATH": str(backups.root / "erasures.jsonl"),
            "PGBACKREST_CONFIG": str(backups.config),
            "PGBACKREST_STANZA": STANZA,
        }
        with timed("backup-window", times):
            window = flask("backup-window", env=env)
        with timed("restore-store", times):
            said = flask("restore-store", str(store_id), "--at", at.isoformat(), env=env)
        assert items_of(cluster, store_id) == arguments.items

    print(f"A database of {size[0]}: a store of {arguments.items:,} items, 100 tags and a link")
    print(f"per item; after its full backup, {arguments.items // 10:,} of them changed and")
    print("another store of 10,000 items made;")
    print("the store then deleted. Wall times, each as the runbook runs it:")
    for what, seconds in times.items():
        print(f"  {what:>42}: {seconds:6.1f} s")
    print(f"flask backup-window:\n{window}\nflask restore-store:\n{said}")


if __name__ == "__main__":
    main()
