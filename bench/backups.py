"""Backups of a database of a million items (--items) with pgBackRest (lz4 and zst) and with
Barman (backup_method = postgres, i.e. pg_basebackup; WAL through its `incoming` directory,
gzip-compressed by `barman archive-wal`), side by side, on the same cluster:

1. a full backup's time (Barman's counts archiving the segments it needs);
2. the repository's size right after it (base backup and the WAL archived so far);
3. archiving: the wall time of 50 segments (pg_switch_wal after a small write each), per
   segment; Barman's archive_command only copies, `archive-wal` then compresses and files
   them: both are counted;
4. a restore's time into a new data directory (the tool's command only).

`.venv/bin/python bench/backups.py` (part of `make bench`, which installs Barman); starts its
own PostgreSQL, repositories in temp dirs.
The choice and the figures: docs/operations.md ("Backups") and docs/benchmarks.md.
"""

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import admin_token_maker, dsn, seed_store  # noqa: E402
from tools.throwaway_backups import ThrowawayBackups, connect  # noqa: E402
from tools.throwaway_postgres import (  # noqa: E402
    AS_POSTGRES,
    ThrowawayPostgres,
    owned_temp_dir,
    throwaway_postgres,
)

SEGMENTS = 50


def as_postgres(*command: str | Path) -> None:
    run = subprocess.run([*AS_POSTGRES, *command], capture_output=True, text=True)
    if run.returncode:
        sys.exit(f"{' '.join(map(str, command))} failed:\n{run.stdout}{run.stderr}")


def size_mb(path: Path) -> float:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file()) / 1e6


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def set_archive_command(cluster: ThrowawayPostgres, command: str) -> None:
    with connect(cluster) as db:
        db.execute(f"ALTER SYSTEM SET archive_command = '{command}'")
        db.execute("SELECT pg_reload_conf()")


def push_segments(
    cluster: ThrowawayPostgres, then: Callable[[], object] = lambda: None, segments: int = SEGMENTS
) -> float:
    """Seconds per segment for `segments` new WAL segments to be archived, and `then` done."""
    with connect(cluster) as db:
        db.execute("CREATE TABLE IF NOT EXISTS pushed (at timestamptz DEFAULT now())")
        (archived,) = db.execute("SELECT archived_count FROM pg_stat_archiver").fetchone()
        start = time.perf_counter()
        for _ in range(segments):
            db.execute("INSERT INTO pushed DEFAULT VALUES")
            db.execute("SELECT pg_switch_wal()")
        while db.execute("SELECT archived_count FROM pg_stat_archiver").fetchone()[0] < (
            archived + segments
        ):
            if time.perf_counter() - start > 60:
                log = (cluster.root / "server.log").read_text()[-2000:]
                sys.exit(f"{segments} segments still not archived after a minute:\n{log}")
            time.sleep(0.01)
        then()
        return (time.perf_counter() - start) / segments


def bench_pgbackrest(cluster: ThrowawayPostgres, compress_type: str) -> dict[str, float]:
    backups = ThrowawayBackups(cluster, compress_type=compress_type)
    try:
        backups.start_archiving()
        figures = {"backup_s": timed(backups.backup), "size_mb": size_mb(backups.repo)}
        figures["segment_s"] = push_segments(cluster)
        target = owned_temp_dir("bench-restore-") / "data"
        figures["restore_s"] = timed(lambda: backups.pgbackrest("restore", f"--pg1-path={target}"))
        shutil.rmtree(target.parent)
        return figures
    finally:
        backups.remove()


BARMAN_CONF = """\
[barman]
barman_home = {root}/home
barman_user = postgres
log_file = {root}/barman.log
log_level = WARNING
compression = gzip

[pg]
conninfo = host=127.0.0.1 port={port} user=postgres dbname=postgres
streaming_conninfo = host=127.0.0.1 port={port} user=postgres
backup_method = postgres
archiver = on
path_prefix = {bindir}
"""


def bench_barman(cluster: ThrowawayPostgres) -> dict[str, float]:
    root = owned_temp_dir("bench-barman-")
    config = root / "barman.conf"
    config.write_text(BARMAN_CONF.format(root=root, port=cluster.port, bindir=cluster.bindir))

    def barman(*arguments: str) -> None:
        as_postgres("barman", "-c", config, "-q", *arguments)

    try:
        incoming = root / "home" / "pg" / "incoming"
        as_postgres("mkdir", "-p", incoming)
        set_archive_command(cluster, f"test ! -f {incoming}/%f && cp %p {incoming}/%f")
        # Barman backs up only once it has seen a segment archived.
        push_segments(cluster, then=lambda: barman("archive-wal", "pg"), segments=1)

        def backup() -> None:
            barman("backup", "pg")
            with connect(cluster) as db:
                db.execute("SELECT pg_switch_wal()")
            barman("archive-wal", "pg")

        figures = {"backup_s": timed(backup), "size_mb": size_mb(root / "home")}
        figures["segment_s"] = push_segments(cluster, then=lambda: barman("archive-wal", "pg"))
        target = owned_temp_dir("bench-restore-") / "data"
        figures["restore_s"] = timed(lambda: barman("recover", "pg", "latest", str(target)))
        shutil.rmtree(target.parent)
        return figures
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    arguments = parser.parse_args()

    with throwaway_postgres() as cluster:
        admin_token_maker(cluster.url())
        with psycopg.connect(dsn(cluster.url()), autocommit=True) as db:
            seed_store(db, "backed up", arguments.items, 100)
            database_mb = db.execute("SELECT pg_database_size('postgres') / 1e6").fetchone()[0]
        print(f"Database: {arguments.items:,} items, {database_mb:.0f} MB")
        results = {
            "pgBackRest lz4": bench_pgbackrest(cluster, "lz4"),
            "pgBackRest zst": bench_pgbackrest(cluster, "zst"),
            "Barman (postgres, gzip WAL)": bench_barman(cluster),
        }

    rows = {
        "full backup (s)": "backup_s",
        "repository (MB)": "size_mb",
        "archiving, per WAL segment (ms)": "segment_s",
        "restore to a new data directory (s)": "restore_s",
    }
    width = max(map(len, rows))
    print(f"{'':{width}}" + "".join(f"{name:>30}" for name in results))
    for label, key in rows.items():
        scale = 1000 if key == "segment_s" else 1
        cells = "".join(f"{figures[key] * scale:>30.1f}" for figures in results.values())
        print(f"{label:{width}}{cells}")


if __name__ == "__main__":
    main()
