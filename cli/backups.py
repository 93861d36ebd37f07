"""`flask restore-store`: one store brought back as it was at a time, from the backups, into
the live database while the API serves (docs/operations.md, "One store back"); `flask
apply-erasures`: after a restore of the whole database, the erased stores it brought back
deleted again (backups/erasures.py); `flask backup-window`: the times a restore reaches."""

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import click
import psycopg
from flask.cli import with_appcontext
from marshmallow import ValidationError
from sqlalchemy import make_url

from backups.erasures import apply_erasures, log_path, read_log
from backups.restored import RestoreFailedError, connect, restored
from backups.store_copy import (
    ROWS_OF_STORE,
    StoreErasedError,
    StoreNotInCopyError,
    copy_store,
)
from backups.window import (
    BackupInfoError,
    last_archived_commit,
    latest_restorable,
    repository_backups,
)
from cli.catalogue import Progress
from config.settings import current_settings
from connections.options import libpq_conninfo
from db import db
from schemas.field_types import Name

Done = TypeVar("Done")


class Time(click.ParamType):
    name = "time"

    def convert(self, value, param, ctx) -> datetime:
        try:
            at = datetime.fromisoformat(value)
            return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).astimezone(UTC)
        except ValueError:
            self.fail(f"{value!r} is no ISO 8601 time, e.g. 2026-12-03T09:30:00Z", param, ctx)
        except OverflowError:
            self.fail(f"{value!r} is out of range", param, ctx)


def store_name(_ctx, _param, value: str | None) -> str | None:
    """--as: a name as the API takes one, checked before the restore's minutes."""
    try:
        return None if value is None else Name().deserialize(value)
    except ValidationError as invalid:
        raise click.BadParameter(" ".join(invalid.messages)) from None


class Signals:
    """SIGTERM (docker stop) and SIGHUP (a closed terminal) end the block as Ctrl-C does,
    through its cleanup: by default Python dies at once, leaving the restored server running
    with a whole copy of the database. Once `finishing()` (the COMMIT on its way: the work is
    done, or fails and says so), one of them only waits for the cleanup and the report:
    `received`."""

    def __init__(self) -> None:
        self.finishing_now = False
        self.received: int | None = None

    def finishing(self) -> None:
        self.finishing_now = True

    def end(self, number: int, _frame) -> None:
        if not self.finishing_now:
            raise SystemExit(128 + number)
        self.received = number

    @contextmanager
    def handled(self) -> Iterator["Signals"]:
        numbers = (signal.SIGTERM, signal.SIGHUP)
        previous = {number: signal.signal(number, self.end) for number in numbers}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


@click.command("restore-store")
@click.argument("store_id", type=click.IntRange(min=1))
@click.option(
    "--at",
    "at",
    type=Time(),
    required=True,
    help="The store as it was at this time (ISO 8601; UTC unless it says).",
)
@click.option("--as", "name", callback=store_name,
              help="Its name now, if a live store has taken its own.")  # fmt: skip
@with_appcontext
def restore_store(store_id: int, at: datetime, name: str | None) -> None:
    """Bring store STORE_ID, its items, tags and links, back as they were at a time: the
    backups (pgBackRest's repository, found by its own configuration: PGBACKREST_CONFIG,
    PGBACKREST_STANZA) are restored to that time on a server of their own, and the store
    copied from there in one transaction, under its own ids where free."""
    live = make_url(db.engine.url)
    if live.get_backend_name() != "postgresql":
        raise click.ClickException("Backups are PostgreSQL's: DATABASE_URL names no PostgreSQL.")
    # The restored copy has the live database's roles: its login is the live one's.
    login = {"user": live.username, "password": live.password, "dbname": live.database}
    login = {key: value for key, value in login.items() if value}
    logged = erasure_log(read_log).erasures
    started = time.monotonic()
    signals = Signals()
    try:
        with signals.handled(), restored(at, login) as server:
            replayed = time.monotonic() - started
            with connect(server, login) as source, connect_live(live) as target:
                progress = Progress("Copied", "rows")
                # From the COMMIT on, what remains is the restored server's removal and the
                # report: a signal then waits for them (once the store is visible, whoever
                # sees it can count on being told so).
                copied = copy_store(
                    source, target, store_id, name, progress.add, logged, signals.finishing
                )
                progress.done()
    except RestoreFailedError as failed:
        raise click.ClickException(f"pgBackRest could not restore to {at}: {failed}") from None
    except StoreNotInCopyError:
        raise click.ClickException(f"Store {store_id} did not exist at {at}.") from None
    except StoreErasedError:
        raise click.ClickException(
            f"Store {store_id} was erased (POST /store/{store_id}/purge): no restore brings it"
            " back, under any name. Nothing was written."
        ) from None
    except psycopg.errors.UniqueViolation:
        raise click.ClickException(
            "A live store has its name: give it another with --as. Nothing was written."
        ) from None
    counts = ", ".join(f"{copied.rows[table]:,} {table}" for table in ROWS_OF_STORE)
    click.echo(
        f"Store {store_id} is back as store {copied.store_id} ({copied.name!r}), as it was at"
        f" {at.isoformat()}: {counts}; restored in {replayed:.1f} s,"
        f" copied in {time.monotonic() - started - replayed:.1f} s."
    )
    for table, pairs in copied.renumbered.items():
        for old, new in pairs:
            click.echo(f"{table} {old} -> {new} (its id was taken)")
    if copied.owner_dropped:
        click.echo("Its owner is no longer a user: it has none.")
    if signals.received is not None:
        click.echo(f"{signal.Signals(signals.received).name} came after the copy: finished first.")


def erasure_log(use: Callable[[Path], Done]) -> Done:
    """`use(the erasure log's path)`, a log that cannot be read said so in a line (not a
    traceback), a missing one warned of: right for a deployment that never erased a store,
    and the mistake of one whose ERASURE_LOG_PATH is wrong."""
    path = log_path()
    if not path.exists():
        click.echo(
            f"Warning: no erasure log at {path} (ERASURE_LOG_PATH): only the database's own"
            " erasures count. Right if no store was ever erased (POST /store/<id>/purge);"
            " otherwise point ERASURE_LOG_PATH at the log.",
            err=True,
        )
    try:
        return use(path)
    except OSError as failed:  # a directory, no permission, a disk's error
        raise click.ClickException(
            f"The erasure log {path} (ERASURE_LOG_PATH) cannot be used: {failed.strerror}."
        ) from None


def connect_live(url) -> psycopg.Connection:
    """The live database, straight (psycopg 3 copies; the app may use psycopg2)."""
    conninfo = libpq_conninfo(
        url.render_as_string(hide_password=False), current_settings().database_connect_timeout
    )
    return psycopg.connect(conninfo, autocommit=True)


@click.command("apply-erasures")
@with_appcontext
def apply_erasures_command() -> None:
    """Delete again every store an erasure names (POST /store/<id>/purge): run it after any
    restore of the database, before serving (deploy/start.sh does, after the migrations).
    The erasure log (ERASURE_LOG_PATH) and the erasures table are first made to hold the
    same erasures; a store is erased when its id and created_at both match one."""
    path = log_path()
    applied = erasure_log(apply_erasures)
    if applied.torn:
        click.echo(f"Skipped {applied.torn} torn line(s) of {path}.")
    click.echo(
        f"{applied.recorded} erasure(s) of {path} put back in the database,"
        f" {applied.logged} of the database's logged there; purged"
        f" {len(applied.purged)} erased store(s){''.join(f' {each}' for each in applied.purged)}."
    )


@click.command("backup-window")
def backup_window() -> None:
    """The recoverable window: the earliest and latest time a restore of the database (or
    `flask restore-store`) reaches, from pgBackRest's repository (found by its own
    configuration: PGBACKREST_CONFIG, PGBACKREST_STANZA), and the last good backup."""
    try:
        backups = repository_backups()
        if backups.last_good is None:
            raise click.ClickException("The repository holds no backup yet: nothing to restore.")
        bindir = Path(subprocess.check_output(["pg_config", "--bindir"], text=True).strip())
        last_commit = backups.newest_segment and last_archived_commit(backups, bindir)
    except BackupInfoError as failed:
        raise click.ClickException(f"pgBackRest could not say: {failed}") from None
    if last_commit is None or last_commit < backups.earliest_restorable:
        raise click.ClickException(
            "The archive holds no commit since the oldest backup: a restore reaches no time"
            " yet (one will, once a commit is archived, within archive_timeout)."
        )
    click.echo(f"earliest: {backups.earliest_restorable.isoformat()}  (the oldest backup's end)")
    click.echo(
        f"latest:   {latest_restorable(last_commit).isoformat()}  (just before the last commit"
        " archived; a restore to the end of the archive holds that one too)"
    )
    click.echo(f"last good backup: {backups.last_good.isoformat()}")
