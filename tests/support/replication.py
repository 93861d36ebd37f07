"""A primary with hot standbys streaming from it (pg_basebackup -R), the API on them, and
what tests do to them: pause a standby's replay, stop and start it, freeze its processes,
read its statistics; and servers that only look like standbys of the primary."""

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import flask_migrate
import psycopg
from flask import Flask
from prometheus_client import REGISTRY
from sqlalchemy import make_url

from app import create_app
from config.settings import Settings
from db import db
from models import UserModel
from security.tokens import issue_tokens
from support import JWT_SECRET, bearer_of
from tools.gunicorn_server import ROOT
from tools.throwaway_postgres import ThrowawayPostgres, throwaway_pgbouncer, throwaway_postgres


class Replication:
    def __init__(self, stack: ExitStack, standbys: int = 1) -> None:
        self.stack = stack
        self.primary = stack.enter_context(throwaway_postgres())
        self.standbys = [
            stack.enter_context(throwaway_postgres(standby_of=self.primary))
            for _ in range(standbys)
        ]
        self.standby = self.standbys[0]
        self.pgbouncers: dict[str, int] = {}
        self.apps: dict[tuple, Flask] = {}
        migrate(self.primary)

    def urls(self, database: str) -> tuple[str, str]:
        """DATABASE_URL and DATABASE_REPLICA_URLS for `database` ("psycopg+pgbouncer", ...)."""
        replicas = ",".join(self.url(standby, database) for standby in self.standbys)
        return self.url(self.primary, database), replicas

    def url(self, cluster: ThrowawayPostgres, database: str) -> str:
        """The URL of `cluster` for `database`: with its driver, through PgBouncer if it says."""
        driver, _, through = database.partition("+")
        url = make_url(cluster.url(driver))
        if through:
            url = url.set(port=self.pgbouncer(cluster))
        return url.render_as_string(hide_password=False)

    def pgbouncer(self, cluster: ThrowawayPostgres) -> int:
        name = str(cluster.data)
        if name not in self.pgbouncers:
            self.pgbouncers[name] = self.stack.enter_context(
                throwaway_pgbouncer(make_url(cluster.url()))
            )
        return self.pgbouncers[name]

    def app(self, database: str, max_lag_seconds: float = 30.0, *also: str) -> Flask:
        """The API in process with the standby as its replica, and the URLs `also` after it
        (a generous maximum lag unless the test is about the lag)."""
        key = (database, max_lag_seconds, *also)
        if key not in self.apps:
            primary, replica = self.urls(database)
            settings = Settings(
                database_url=primary,
                database_replica_urls=",".join((replica, *also)),
                database_replica_max_lag_seconds=max_lag_seconds,
            )
            self.apps[key] = create_app(settings, TESTING=True, JWT_SECRET_KEY=JWT_SECRET)
        return self.apps[key]

    def on(self, cluster: ThrowawayPostgres, statement: str, *params) -> list[tuple]:
        with psycopg.connect(cluster.url().replace("postgresql+psycopg", "postgresql"),
                             autocommit=True) as connection:  # fmt: skip
            cursor = connection.execute(statement, params or None)
            return cursor.fetchall() if cursor.description else []

    def reset(self) -> None:
        """Empty tables, ids from 1, replay running, and the standbys caught up."""
        for standby in self.standbys:
            self.on(standby, "SELECT pg_wal_replay_resume()")
        tables = self.on(
            self.primary,
            "SELECT string_agg(tablename, ', ') FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'",
        )[0][0]
        self.on(self.primary, f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        for app in self.apps.values():
            # Its users' notes went with recent_writes: the next writes must write them.
            app.extensions["replication"].notes.taken_at.clear()
        self.wait_until_caught_up()

    def wait_until_caught_up(self, timeout: float = 45.0) -> None:
        # Past max_standby_streaming_delay (30 s by default): replay that conflicts with a
        # standby's query waits that long at most, then cancels the query.
        target = self.on(self.primary, "SELECT pg_current_wal_insert_lsn()")[0][0]
        deadline = time.monotonic() + timeout
        for standby in self.standbys:
            while not self.on(standby, "SELECT pg_last_wal_replay_lsn() >= %s", target)[0][0]:
                assert time.monotonic() < deadline, "a standby did not catch up"
                time.sleep(0.05)

    @contextmanager
    def replay_paused(self, standby: ThrowawayPostgres | None = None) -> Iterator[None]:
        """The replay of `standby` (the first one by default) paused while the block runs."""
        standby = standby or self.standby
        self.on(standby, "SELECT pg_wal_replay_pause()")
        try:
            yield
        finally:
            self.on(standby, "SELECT pg_wal_replay_resume()")

    def scans(self, cluster: ThrowawayPostgres, table: str) -> int:
        """Scans of `table` the server's statistics count (flushed by backends within 10 s)."""
        found = self.on(
            cluster,
            "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables "
            "WHERE relname = %s",
            table,
        )
        return found[0][0] if found else 0


def migrate(cluster: ThrowawayPostgres) -> None:
    """The API's schema on the cluster."""
    migrating = create_app(Settings(database_url=cluster.url()), TESTING=True)
    with migrating.app_context():
        flask_migrate.upgrade(directory=str(ROOT / "migrations"))
        db.engine.dispose()


@contextmanager
def frozen(cluster: ThrowawayPostgres, thawed_after: float = 20.0) -> Iterator[None]:
    """Every process of the server stopped (SIGSTOP), as a frozen VM's: its kernel still
    acknowledges every packet, so no TCP timeout fires and no statement timeout runs. Thawed
    on leaving, or after `thawed_after` seconds whatever happens (a test must not hang)."""
    postmaster = cluster.postmaster_pid()
    os.kill(postmaster, signal.SIGSTOP)  # first: it forks no more backends
    processes = [postmaster, *children_of(postmaster)]
    for pid in processes[1:]:
        os.kill(pid, signal.SIGSTOP)

    def thaw() -> None:
        for pid in processes:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    timer = threading.Timer(thawed_after, thaw)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        thaw()


def children_of(parent: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command may hold spaces and parentheses: the fields after its last ")".
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return children


def put_in_recovery(cluster: ThrowawayPostgres) -> None:
    """Restart the server as a hot standby (standby.signal), following whatever its
    configuration says (pg_basebackup -R's primary_conninfo), or nothing: then it replays what
    it has and waits, answering reads."""
    cluster.stop()
    signal_file = cluster.data / "standby.signal"
    signal_file.touch()
    if os.geteuid() == 0:
        shutil.chown(signal_file, "postgres", "postgres")
    cluster.start()


def reads_served(database: str) -> float:
    """GETs this process's apps read from `database` (primary, replica1, ...), so far."""
    return REGISTRY.get_sample_value("database_reads_total", {"database": database}) or 0.0


def writer_of(app: Flask, username: str = "owner") -> dict[str, str]:
    """A user, straight on the primary, and the headers of their token."""
    with app.app_context():
        user = UserModel(username=username, email=f"{username}@example.com", password_hash="-")
        db.session.add(user)
        db.session.commit()
    with app.test_request_context():
        return bearer_of(issue_tokens(user, fresh=True)["access_token"])
