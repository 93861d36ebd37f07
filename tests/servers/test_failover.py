"""The primary dies and Patroni promotes its synchronous standby: under writers that retry
with Idempotency-Keys and a reader, the API answers only 2xx and 503, writes resume by
themselves within 5 s of the promotion, every acknowledged write is on the new primary,
none twice, and the job worker and migrations find the new primary too; the new primary
archives into the same pgBackRest stanza, and a restore to a time after the failover holds
every acknowledged write. Through the
deployed path (PgBouncer, then HAProxy asking Patroni which node is the primary, as
docker-compose.ha.yml runs them) and with a multi-host DATABASE_URL."""

import json
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import count
from pathlib import Path

import flask_migrate
import pytest
import requests
from sqlalchemy import create_engine, make_url
from support.http import server_env, sign_up
from support.threads import Clients
from support.worker import import_runs, worker

from app import create_app
from backups.restored import connect, restored
from config.settings import Settings
from tools.gunicorn_server import API, ROOT, gunicorn
from tools.throwaway_patroni import (
    STANZA,
    USER,
    PatroniCluster,
    throwaway_haproxy,
    throwaway_patroni,
    wait_for,
)
from tools.throwaway_postgres import owned_temp_dir, throwaway_pgbouncer

pytestmark = pytest.mark.one_driver
MIGRATIONS = str(ROOT / "migrations")


@contextmanager
def database_url(cluster: PatroniCluster, path: str):
    """The URL the API is given, and the one its migrations run on, as deployed."""
    if path == "multi-host":
        yield cluster.multi_host_url(), cluster.multi_host_url()
        return
    with throwaway_haproxy(cluster) as haproxy_port:
        primary = make_url(cluster.url(cluster.primary())).set(port=haproxy_port)
        with throwaway_pgbouncer(primary) as pgbouncer_port:
            through_pgbouncer = primary.set(port=pgbouncer_port)
            yield (
                through_pgbouncer.render_as_string(hide_password=False),
                primary.render_as_string(hide_password=False),
            )


class Load(Clients):
    """Two writers, each creating stores one after another with an Idempotency-Key per
    store and retrying it until acknowledged, and a reader; every answer recorded."""

    def __init__(self, base_url: str, headers: dict, store_id: int) -> None:
        self.base_url, self.headers, self.store_id = base_url, headers, store_id
        self.answers: list[tuple[str, float, int | str]] = []
        self.acknowledged: list[str] = []
        writers = [threading.Thread(target=self.write, args=(n,)) for n in range(2)]
        super().__init__([*writers, threading.Thread(target=self.read)])

    def answer(self, what: str, method: str, path: str, **kwargs) -> int | str:
        try:
            status = requests.request(
                method, self.base_url + path, timeout=60, **kwargs
            ).status_code
        except requests.RequestException as error:  # none expected: recorded, and asserted
            status = type(error).__name__
        self.answers.append((what, time.monotonic(), status))
        return status

    def write(self, writer: int) -> None:
        for number in count():
            name = f"Writer {writer} store {number}"
            headers = {**self.headers, "Idempotency-Key": name}
            while not self.stop.is_set():
                status = self.answer(
                    "write", "POST", "/store", json={"name": name}, headers=headers
                )
                if status in (200, 201):
                    self.acknowledged.append(name)
                    break
                time.sleep(0.2)
            if self.stop.is_set():
                return

    def read(self) -> None:
        while not self.stop.is_set():
            self.answer("read", "GET", f"/store/{self.store_id}")
            time.sleep(0.05)

    def answered(self, since: float) -> bool:
        """Whether writes and reads have each been answered 2xx a few times since `since`."""
        answered = [
            what for what, at, status in self.answers if at > since and status in (200, 201)
        ]
        return answered.count("write") >= 6 and answered.count("read") >= 3


def names_counted(url: str) -> dict[str, int]:
    """How many stores of each name the database holds."""
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT name, count(*) FROM stores GROUP BY name")
        counted = dict(rows.all())
    engine.dispose()
    return counted


@pytest.fixture
def repository() -> Iterator[Path]:
    """A directory for a pgBackRest repository, removed afterwards."""
    directory = owned_temp_dir("patroni-repository-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("path", ["deployed", "multi-host"])
def test_writes_follow_a_patroni_failover_and_nothing_acknowledged_is_lost(path, repository):
    """... and archiving follows it too: the new primary archives into the stanza the old
    one did, so a restore of a backup taken before the failover, to a time after it, holds
    every write acknowledged on either primary."""
    with (
        throwaway_patroni(repository=repository) as cluster,
        database_url(cluster, path) as (url, migrations_url),
    ):
        migrations = create_app(Settings(database_url=migrations_url), TESTING=True)
        with migrations.app_context():
            flask_migrate.upgrade(directory=MIGRATIONS)
        jobs = worker(migrations_url)  # straight to PostgreSQL, as compose runs it
        with gunicorn(API, server_env(url), "--workers", "2") as server:
            headers = sign_up(server.url, "failing-over")
            store = requests.post(
                f"{server.url}/store", json={"name": "Read"}, headers=headers, timeout=30
            ).json()
            old_primary = cluster.primary()
            (standby,) = [node for node in cluster.nodes if node is not old_primary]
            old_primary.pgbackrest("stanza-create")
            old_primary.pgbackrest("backup", "--type=full")
            started = time.monotonic()
            with Load(server.url, headers, store["id"]) as load:
                wait_for(lambda: load.answered(since=started), "the load under way", 10)
                old_primary.kill()
                promoted_at = wait_for(standby.is_primary, "the standby promoted", timeout=60)
                # The bound on resuming is asserted below; past it, the load runs on no longer
                # than it takes every client to be answered again, a few times over.
                wait_for(lambda: load.answered(since=promoted_at), "the load resumed", 8)
            # The new primary's own WAL switch reaches the repository (pgBackRest's check):
            # it archives into the old one's stanza. Every write acknowledged is before `at`.
            standby.pgbackrest("check")
            at = datetime.now(UTC)
            # procrastinate stops its worker once its connection is lost (a side task failed),
            # and compose starts it again (restart: unless-stopped), as any supervisor would:
            # the new one finds the new primary, and runs an import sent now.
            assert jobs.wait(timeout=30) is not None
            jobs = worker(migrations_url)
            try:
                assert import_runs(server.url, headers, store["id"]), jobs.stderr.read()
            finally:
                jobs.terminate()
                jobs.wait(timeout=30)
        # So do migrations: the last one taken back and made again, on the new primary.
        with migrations.app_context():
            flask_migrate.downgrade(directory=MIGRATIONS, revision="-1")
            flask_migrate.upgrade(directory=MIGRATIONS)
        stored = names_counted(cluster.url(standby))
        # Archived past `at` (the migrations committed since), on the new timeline.
        standby.pgbackrest("check")
        (stanza,) = json.loads(standby.pgbackrest("info", "--output=json"))
        assert stanza["archive"][-1]["max"].startswith("00000002"), stanza["archive"]
        login = {"user": "postgres", "dbname": USER}
        with (
            restored(at, login, f"--config={standby.pgbackrest_config}", f"--stanza={STANZA}")
            as copy, connect(copy, login) as db,
        ):  # fmt: skip
            names = {name for (name,) in db.execute("SELECT name FROM stores")}

    statuses = {status for _, _, status in load.answers}
    assert statuses <= {200, 201, 503}, statuses
    assert 503 in statuses  # the failover was felt
    resumed_at = min(
        at for what, at, status in load.answers if what == "write" and status == 201
        and at > promoted_at
    )  # fmt: skip
    assert resumed_at - promoted_at <= 5, [
        (what, round(at - promoted_at, 2), status)
        for what, at, status in load.answers
        if at > promoted_at - 1
    ]

    # On the new primary: every acknowledged store, each once.
    assert load.acknowledged
    assert set(load.acknowledged) <= set(stored), set(load.acknowledged) - set(stored)
    assert max(stored.values()) == 1, {name for name, n in stored.items() if n > 1}
    # Restored from the repository alone to a time after the failover: the same.
    assert set(load.acknowledged) <= names, set(load.acknowledged) - names


def test_patroni_bootstraps_the_apis_role_and_database():
    """The first primary runs deploy/patroni/post-bootstrap.sh, as postgres: the API's role
    logs in to its database (quick, beside the failovers: tests/servers/test_clone.py)."""
    with throwaway_patroni(nodes=1) as cluster:
        engine = create_engine(cluster.url(cluster.primary()))
        with engine.connect() as connection:
            owner = connection.exec_driver_sql(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
            )
            assert owner.scalar() == USER
        engine.dispose()
