"""The database as it was: pgBackRest's repository restored into a server of its own
(tools.throwaway_postgres: a temporary directory, a free port on 127.0.0.1), replayed to a
point in time or to the end of the archive, promoted, and removed afterwards. It archives
nothing: the repository stays as it was.

pgBackRest finds the repository as it always does, by its configuration file
(/etc/pgbackrest/pgbackrest.conf, or PGBACKREST_CONFIG) and the stanza (PGBACKREST_STANZA),
unless `options` name them.
"""

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from tools.throwaway_postgres import AS_POSTGRES, ThrowawayPostgres


class RestoreFailedError(Exception):
    """pgBackRest could not restore (a time before the first backup, no repository): what
    it said."""


@contextmanager
def restored(
    at: datetime | None,
    login: dict[str, str],
    *options: str,
    timeout: float = 3600,
    streamed_wal: Path | None = None,
) -> Iterator[ThrowawayPostgres]:
    """A running server holding every transaction committed up to `at` and none after (None:
    all the archive holds, then all `streamed_wal` holds); `options` go to `pgbackrest
    restore`. `login` (user, password, dbname) is a role of the restored database's, which
    checks that it was promoted.

    `streamed_wal`: the directory of a `pg_receivewal` (the zero-loss option), whose WAL
    reaches past the archive's last segment."""
    target = []
    if at is not None:
        target = ["--type=time", f"--target={at.astimezone(UTC).isoformat(sep=' ')}",
                  "--target-action=promote"]  # fmt: skip

    def restore_into(data: Path) -> None:
        run = run_as_a_group(
            [*AS_POSTGRES, "pgbackrest", *options, "restore", f"--pg1-path={data}",
             "--archive-mode=off", *target],
        )  # fmt: skip
        if run.returncode:
            raise RestoreFailedError(run.stderr.strip() or run.stdout.strip())
        if streamed_wal is not None:
            with_streamed_wal(data / "pg_wal", streamed_wal)

    server = ThrowawayPostgres(data_from=restore_into)
    try:
        try:
            server.start()
            wait_until_promoted(connect(server, login), timeout)
        except (subprocess.CalledProcessError, psycopg.OperationalError) as stopped:
            # E.g. "recovery ended before configured recovery target was reached": a time
            # the archive does not reach yet.
            raise RestoreFailedError(why_it_stopped(server)) from stopped
        yield server
    finally:
        server.remove()


def run_as_a_group(command: list[str]) -> subprocess.CompletedProcess:
    """`command` run to its end in a process group of its own, its output captured; ended
    early (a signal, Ctrl-C), the whole group is killed and gone before this returns: killing
    the command alone (subprocess.run's way) leaves runuser's child, pgBackRest, and its
    `restore:local` processes writing into a directory about to be removed."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate()
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        # Its children, reparented, may outlive it for a moment (as zombies, done, where
        # nothing reaps them: a container's first process may not).
        while any(state != "Z" for state in states_of_group(process.pid)):
            time.sleep(0.01)
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def states_of_group(group: int) -> Iterator[str]:
    """The state (R, S, Z...) of each process of process group `group` (Linux's /proc)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # After the command's name, in parentheses: state, parent, group...
            state, _parent, pgrp, *_ = stat.read_text().rpartition(")")[2].split()
        except OSError:  # ended meanwhile
            continue
        if int(pgrp) == group:
            yield state


def with_streamed_wal(pg_wal: Path, streamed_wal: Path) -> None:
    """The receiver's segments put in the restored pg_wal, the one it was writing (`.partial`,
    full-sized: pg_receivewal fills it with zeros first) under its segment's name. Recovery
    asks the archive (restore_command) first, and reads pg_wal for what the archive lacks."""
    for segment in streamed_wal.iterdir():
        subprocess.run(
            [*AS_POSTGRES, "cp", segment, pg_wal / segment.name.removesuffix(".partial")],
            check=True,
        )


def why_it_stopped(server: ThrowawayPostgres, timeout: float = 30) -> str:
    """What the restored server's recovery (its startup process) said as it failed, once the
    server is gone: until then it may still be writing it, and refusing our connections
    meanwhile ("the database system is in recovery mode"), each refusal a FATAL line too."""
    deadline = time.monotonic() + timeout
    while not server.has_stopped() and time.monotonic() < deadline:
        time.sleep(0.1)
    fatal = [line for line in server.log().splitlines() if "[startup] FATAL:" in line]
    return fatal[-1].partition("FATAL:")[2].strip() if fatal else "the restored server stopped"


def connect(server: ThrowawayPostgres, login: dict[str, str]) -> psycopg.Connection:
    """A connection through the server's own socket directory, in autocommit."""
    return psycopg.connect(host=str(server.root), port=server.port, autocommit=True, **login)


def wait_until_promoted(connection: psycopg.Connection, timeout: float) -> None:
    """Until the server has replayed to its target and accepts writes."""
    deadline = time.monotonic() + timeout
    with connection:
        while connection.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"still in recovery after {timeout} s")
            time.sleep(0.1)
