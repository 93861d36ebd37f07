"""A pgBackRest repository of its own for tests and benchmarks, gone when they end: it
archives a ThrowawayPostgres's WAL, takes its base backups and restores them into new
clusters, to the end of the archive or to a point in time.

pgBackRest over Barman: see docs/operations.md's "Backups" (bench/backups.py measures both).
"""

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Literal

import psycopg

from backups.restored import restored
from tools.throwaway_postgres import AS_POSTGRES, ThrowawayPostgres, owned_temp_dir

STANZA = "main"
# bench/backups.py: zst's repository is less than half of lz4's, archiving as fast; a backup
# takes 1.3-1.5 x lz4's time, a restore 0.9-1.5 x (docs/benchmarks.md).
COMPRESS_TYPE = "zst"


class PgBackRestFailed(subprocess.CalledProcessError):
    """A pgBackRest command that failed, with what it said."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr.strip()}"


class InvalidRepositoryError(Exception):
    """pgBackRest's verification found a backup or WAL segment missing or damaged."""


class ThrowawayBackups:
    """A repository in its own temporary directory, with a configuration file written there
    for one stanza: `cluster`'s data directory and port. With a `key`, the repository is
    encrypted (aes-256-cbc): without the key nothing in it can be read."""

    def __init__(
        self,
        cluster: ThrowawayPostgres,
        retention_full: int = 2,
        key: str | None = None,
        compress_type: str = COMPRESS_TYPE,
    ) -> None:
        self.cluster = cluster
        self.root = owned_temp_dir("throwaway-backups-")
        self.repo = self.root / "repo"
        self.config = self.root / "pgbackrest.conf"
        settings = {
            "repo1-path": self.repo,
            "repo1-retention-full": retention_full,
            "compress-type": compress_type,
            # Logs, locks and the spool stay in the temporary directory, apart from any other
            # repository's on the machine.
            "log-path": self.root,
            "lock-path": self.root,
            "spool-path": self.root,
            "log-level-console": "warn",
            # A backup starts with an immediate checkpoint, not a spread one.
            "start-fast": "y",
        }
        if key is not None:
            settings |= {"repo1-cipher-type": "aes-256-cbc", "repo1-cipher-pass": key}
        stanza = {
            "pg1-path": cluster.data,
            "pg1-port": cluster.port,
            "pg1-socket-path": cluster.root,
            "pg1-user": "postgres",
        }
        self.config.write_text(
            "".join(
                f"[{section}]\n" + "".join(f"{name}={value}\n" for name, value in options.items())
                for section, options in (("global", settings), (STANZA, stanza))
            )
        )
        if AS_POSTGRES:
            shutil.chown(self.config, "postgres", "postgres")
        self.config.chmod(0o600)  # it holds the key

    def pgbackrest(self, command: str, *options: str, arguments: tuple[str, ...] = ()) -> str:
        """Run a pgBackRest command on the stanza with this configuration (and `arguments`
        after it: archive-get's segment and path); its output."""
        run = subprocess.run(
            [*AS_POSTGRES, "pgbackrest", f"--config={self.config}", f"--stanza={STANZA}",
             *options, command, *arguments],
            capture_output=True, text=True, errors="replace",
        )  # fmt: skip
        if run.returncode:
            raise PgBackRestFailed(run.returncode, run.args, run.stdout, run.stderr)
        return run.stdout

    def archive_command(self) -> str:
        return f"pgbackrest --config={self.config} --stanza={STANZA} archive-push %p"

    def start_archiving(self, **settings: str) -> None:
        """Archive the cluster's WAL into the repository, a segment at least every minute,
        and create the stanza. Restarts the cluster (archive_mode needs it), with `settings`
        set too (e.g. track_commit_timestamp="on")."""
        settings = {
            "archive_mode": "on",
            "archive_command": self.archive_command(),
            "archive_timeout": "60",
            **settings,
        }
        with connect(self.cluster) as db:
            for name, value in settings.items():
                db.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        self.cluster.stop()
        self.cluster.start()
        self.pgbackrest("stanza-create")
        self.check()

    def check(self) -> None:
        """Switch to a new WAL segment and wait until it is archived (pgBackRest's check):
        every commit so far is then in the repository."""
        self.pgbackrest("check")

    def backup(self, type: Literal["full", "diff", "incr"] = "full") -> None:
        self.pgbackrest("backup", f"--type={type}")

    def verify(self, *options: str) -> str:
        """pgBackRest's verification of every backup and WAL segment in the repository (or
        another, e.g. `--repo1-path=...`); its report. Raises InvalidRepositoryError when a file
        is missing or does not match its checksum: pgBackRest 2.45 exits with 0 then, and
        says so only in the report."""
        report = self.pgbackrest("verify", "--output=text", "--verbose", *options)
        statuses = re.findall(r"^status: (.*)$", report, re.MULTILINE)
        if not statuses or set(statuses) != {"ok"}:
            raise InvalidRepositoryError(report)
        return report

    def info(self) -> list[dict]:
        """The repository's stanzas, their backups and archive, as `pgbackrest info` gives them."""
        return json.loads(self.pgbackrest("info", "--output=json"))

    def restore(
        self, target_time: datetime | None = None, streamed_wal: Path | None = None
    ) -> AbstractContextManager[ThrowawayPostgres]:
        """A new cluster from the repository alone (backups.restored: the restore-store
        command's): replayed to `target_time` (every transaction committed up to it, none
        after), or to the end of the archive (and then of `streamed_wal`, a WAL receiver's
        directory), then promoted; gone once the block ends."""
        login = {"user": "postgres", "dbname": "postgres"}
        options = f"--config={self.config}", f"--stanza={STANZA}"
        return restored(target_time, login, *options, streamed_wal=streamed_wal)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def connect(cluster: ThrowawayPostgres) -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1", port=cluster.port, user="postgres", dbname="postgres", autocommit=True
    )


@contextmanager
def throwaway_backups(
    cluster: ThrowawayPostgres, settings: dict[str, str] | None = None, **options
) -> Iterator[ThrowawayBackups]:
    """A repository for `cluster` (`options`: see ThrowawayBackups), archiving its WAL, the
    cluster restarted with `settings` too."""
    backups = ThrowawayBackups(cluster, **options)
    try:
        backups.start_archiving(**(settings or {}))
        yield backups
    finally:
        backups.remove()


RECEIVER = "walreceiver"


class ThrowawayWalReceiver:
    """The zero-loss option (docs/operations.md, "No write lost"): `pg_receivewal
    --synchronous` streaming the cluster's WAL into a directory of its own, through a
    replication slot, as the cluster's synchronous standby. Every commit then waits until the
    receiver has written and flushed its WAL (synchronous_commit = on): what the API
    acknowledged is on the receiver's disk, even if the cluster's is lost."""

    def __init__(self, cluster: ThrowawayPostgres) -> None:
        self.cluster = cluster
        self.wal = owned_temp_dir("throwaway-walreceiver-")
        self.process: subprocess.Popen | None = None
        with connect(cluster) as db:
            db.execute("SELECT pg_create_physical_replication_slot(%s)", (RECEIVER,))
            # The throwaway cluster commits asynchronously (its command line): its roles'
            # setting wins over that, and the API's connections log in as postgres. Set
            # before the receiver is named: a commit would wait for it from then on.
            db.execute("ALTER ROLE postgres SET synchronous_commit = 'on'")
            db.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{RECEIVER}'")
            db.execute("SELECT pg_reload_conf()")

    def start(self) -> None:
        """Start streaming, from the slot's position, and wait until it is the synchronous
        standby."""
        self.process = subprocess.Popen(
            [self.cluster.bindir / "pg_receivewal", "--synchronous", f"--slot={RECEIVER}",
             f"--directory={self.wal}", "--no-password",
             f"--dbname=host=127.0.0.1 port={self.cluster.port} user=postgres "
             f"application_name={RECEIVER}"],
            user="postgres" if AS_POSTGRES else None,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        with connect(self.cluster) as db:
            for _ in range(300):
                state = db.execute(
                    "SELECT sync_state FROM pg_stat_replication WHERE application_name = %s",
                    (RECEIVER,),
                ).fetchone()
                if state == ("sync",):
                    return
                time.sleep(0.05)
        raise TimeoutError("pg_receivewal did not become the synchronous standby")

    def stop(self) -> None:
        """Stop streaming (SIGTERM: what it received is flushed; the segment it was writing
        stays `.partial`)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.wal, ignore_errors=True)


@contextmanager
def wal_receiver(cluster: ThrowawayPostgres) -> Iterator[ThrowawayWalReceiver]:
    """A synchronous WAL receiver of `cluster`, streaming."""
    receiver = ThrowawayWalReceiver(cluster)
    try:
        receiver.start()
        yield receiver
    finally:
        receiver.remove()
