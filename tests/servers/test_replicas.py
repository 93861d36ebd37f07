"""Reads on a hot standby (DATABASE_REPLICA_URLS), on real servers: a primary and a standby
streaming from it, with each driver and through PgBouncer. GETs land on the standby (its own
statistics say so); with its replay paused, a writer reads its writes by its token alone,
others read the standby, writes never touch it, and a revoked token is refused at once; past
the maximum lag, and stopped, it serves nothing, with no error to anyone, and serves again
once back; a read cancelled by recovery is answered from the primary. Frozen (SIGSTOP), or
with reads queued behind replay waiting for a report, it holds a read no longer than
DATABASE_REPLICA_TIMEOUT_SECONDS; another cluster, or a standby gone off the primary's
timeline, serves nothing (a standby that follows a new primary after a failover:
test_replica_failover.py)."""

import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import partial

import pytest
import requests
from prometheus_client import REGISTRY
from sqlalchemy import event
from support.http import metric_total, run_together, server_env, sign_up
from support.replication import (
    Replication,
    frozen,
    migrate,
    put_in_recovery,
    reads_served,
    writer_of,
)

from app import create_app
from catalogue.runs import run_import
from config.settings import Settings, SettingsError, load_settings
from db import db
from replication.replicas import REFUSALS
from tools.gunicorn_server import API, gunicorn
from tools.throwaway_patroni import wait_for
from tools.throwaway_postgres import throwaway_postgres

pytestmark = pytest.mark.pgbouncer_too


@pytest.fixture(scope="module")
def replication():
    with ExitStack() as stack:
        yield Replication(stack)


@pytest.fixture
def replicated(replication: Replication, database: str) -> Replication:
    replication.reset()
    return replication


def fallbacks(reason: str) -> float:
    return REGISTRY.get_sample_value("database_read_fallbacks_total", {"reason": reason}) or 0.0


def a_store_on_both(replicated, database: str, *app_options):
    """The app, a writer's headers, a client without cookies, and a store the standby has."""
    app = replicated.app(database, *app_options)
    writer = writer_of(app)
    client = app.test_client(use_cookies=False)
    store = client.post("/store", json={"name": "Lamps"}, headers=writer).get_json()
    replicated.wait_until_caught_up()
    serving(app)
    return app, writer, client, store


def serving(app) -> None:
    """Until the app's own checks find its first standby serving: an app made by an earlier
    test of this process may still hold it out (its rejoin point not yet replayed)."""
    replicas = app.extensions["replication"].replicas
    replicas.keep_checking()
    wait_for(lambda: replicas.serves(replicas.all[0]), "the standby serving", 15)


def test_reads_land_on_the_replica(replicated, database):
    app, _writer, client, store = a_store_on_both(replicated, database)
    disconnect(app)
    on_standby = replicated.scans(replicated.standby, "stores")
    on_primary = replicated.scans(replicated.primary, "stores")
    served = reads_served("replica1")

    for _ in range(20):
        assert client.get(f"/store/{store['id']}").status_code == 200
        assert client.get("/store").get_json()[0]["name"] == "Lamps"

    assert reads_served("replica1") - served == 40
    disconnect(app)
    wait_for(lambda: replicated.scans(replicated.standby, "stores") >= on_standby + 40,
             "the standby's statistics count the reads", 15)  # fmt: skip
    # None of them on the primary (behind PgBouncer, whose server connections stay open, the
    # write's own scans may be counted only now).
    assert replicated.scans(replicated.primary, "stores") - on_primary < 40


def disconnect(app) -> None:
    """Close the app's connections: their backends exit, and flush their statistics."""
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()
    time.sleep(0.5)


def test_with_replay_paused_writers_read_their_writes_and_others_the_replica(replicated, database):
    app = replicated.app(database)
    writer = writer_of(app)
    client = app.test_client(use_cookies=False)
    writes_on_standby = []

    def on_standby(_connection, _cursor, statement, *_args) -> None:
        if threading.current_thread() is threading.main_thread():  # not the checks' thread
            writes_on_standby.append(statement)

    with app.app_context():
        standby = db.engines["replica1"]
    with replicated.replay_paused():
        for number in range(3):
            event.listen(standby, "before_cursor_execute", on_standby)
            created = client.post("/store", json={"name": f"Store {number}"}, headers=writer)
            item = client.post(
                "/item",
                json={"name": "Lamp", "price": 20, "store_id": created.get_json()["id"]},
                headers=writer,
            )
            event.remove(standby, "before_cursor_execute", on_standby)
            assert (created.status_code, item.status_code) == (201, 201)
            store_id = created.get_json()["id"]

            assert client.get(f"/store/{store_id}", headers=writer).status_code == 200
            items = client.get(f"/store/{store_id}/item", headers=writer).get_json()
            assert [item["name"] for item in items] == ["Lamp"]
            # Anyone else reads the standby, paused before the store.
            assert client.get(f"/store/{store_id}").status_code == 404
            assert client.get(f"/item/{item.get_json()['id']}").status_code == 404
        assert writes_on_standby == []

        assert client.post("/logout", headers=writer).status_code == 200
        refused = client.get("/user/me", headers=writer)
        assert refused.status_code == 401
        assert "revoked" in refused.get_json()["message"]


def test_a_cookie_of_a_write_reads_it_without_a_token(replicated, database):
    """Swagger UI sends no token with public GETs: the write's cookie tells whose they are."""
    app = replicated.app(database)
    writer = writer_of(app)
    browser = app.test_client()
    with replicated.replay_paused():
        created = browser.post("/store", json={"name": "From the browser"}, headers=writer)
        assert created.status_code == 201
        assert "read_your_writes=" in created.headers["Set-Cookie"]
        assert browser.get(f"/store/{created.get_json()['id']}").status_code == 200
        forged = {"Cookie": "read_your_writes=1.forged.signature"}
        stranger = app.test_client(use_cookies=False)
        assert stranger.get(f"/store/{created.get_json()['id']}", headers=forged).status_code == 404


def test_past_the_maximum_lag_the_replica_serves_nothing_until_it_caught_up(replicated, database):
    app = replicated.app(database, max_lag_seconds=2.0)
    writer = writer_of(app)
    client = app.test_client(use_cookies=False)
    client.get("/store")  # the checks start
    with replicated.replay_paused():
        created = client.post("/store", json={"name": "Late"}, headers=writer).get_json()
        lagging = fallbacks("lag")
        # Behind by more than two seconds, the standby is left out: the primary has it.
        wait_for(lambda: client.get(f"/store/{created['id']}").status_code == 200,
                 "the store read from the primary", 15)  # fmt: skip
        assert fallbacks("lag") > lagging
    served = reads_served("replica1")
    wait_for(lambda: client.get("/store").status_code == 200 and reads_served("replica1") > served,
             "reads on the standby again", 15)  # fmt: skip


def test_a_stopped_replica_is_left_out_and_used_again_once_back(replicated, database):
    _app, _writer, client, store = a_store_on_both(replicated, database)
    assert client.get(f"/store/{store['id']}").status_code == 200
    replicated.standby.stop()
    try:
        # Every read answered, by the primary, from the first one after the stop.
        answers = {client.get(f"/store/{store['id']}").status_code for _ in range(30)}
        assert answers == {200}
        assert fallbacks("down") > 0
    finally:
        replicated.standby.start()
    served = reads_served("replica1")
    wait_for(lambda: client.get(f"/store/{store['id']}").status_code == 200
             and reads_served("replica1") > served, "reads on the standby again", 15)  # fmt: skip


@pytest.mark.one_driver
def test_a_read_cancelled_by_recovery_is_answered_from_the_primary(replicated, database):
    _app, _writer, client, store = a_store_on_both(replicated, database)
    # The standby cancels its queries that hold a lock the replay needs, without waiting.
    replicated.on(replicated.standby, "ALTER SYSTEM SET max_standby_streaming_delay = 0")
    replicated.on(replicated.standby, "SELECT pg_reload_conf()")
    conflicts = fallbacks("conflict")
    locking = threading.Event()
    lock_stores = "LOCK TABLE stores IN ACCESS EXCLUSIVE MODE"

    def lock_stores_over_and_over() -> None:
        while not locking.is_set():
            replicated.on(replicated.primary, f"BEGIN; {lock_stores}; COMMIT")

    locker = threading.Thread(target=lock_stores_over_and_over)
    locker.start()
    try:
        answers = set()
        deadline = time.monotonic() + 30
        while fallbacks("conflict") == conflicts and time.monotonic() < deadline:
            answers.add(client.get(f"/store/{store['id']}").status_code)
        assert answers == {200}
        assert fallbacks("conflict") > conflicts
    finally:
        locking.set()
        locker.join()
        replicated.on(replicated.standby, "ALTER SYSTEM RESET max_standby_streaming_delay")
        replicated.on(replicated.standby, "SELECT pg_reload_conf()")
    cancelled = "SELECT confl_lock FROM pg_stat_database_conflicts WHERE datname = 'postgres'"
    wait_for(lambda: replicated.on(replicated.standby, cancelled)[0][0] > 0,
             "the standby's statistics count the conflicts", 15)  # fmt: skip


def test_every_instance_of_the_api_reads_a_clients_writes(replication):
    """Two instances under gunicorn, as deployed (PgBouncer before each server): a write
    through one, then reads through the other, by token alone and by the write's cookie."""
    replication.reset()
    primary, replica = replication.urls("psycopg2+pgbouncer")
    env = server_env(primary, DATABASE_REPLICA_URLS=replica, DATABASE_REPLICA_MAX_LAG_SECONDS="30")
    # One worker each: its first read starts the checks, and until they have seen the standby
    # caught up once, it serves nothing.
    with gunicorn(API, env, "--workers", "1") as one, gunicorn(API, env, "--workers", "1") as other:
        writer = sign_up(one.url, "owner")
        wait_for(lambda: requests.get(f"{other.url}/store", timeout=10).ok and metric_total(
            requests.get(f"{other.url}/metrics", timeout=10).text,
            "database_reads_total", database="replica1",
        ), "reads on the standby", 15)  # fmt: skip
        with replication.replay_paused():
            for number in range(5):
                created = requests.post(
                    f"{one.url}/store", json={"name": f"Store {number}"}, headers=writer, timeout=10
                )
                assert created.status_code == 201
                found = f"{other.url}/store/{created.json()['id']}"
                assert requests.get(found, headers=writer, timeout=10).status_code == 200
                assert requests.get(found, cookies=created.cookies, timeout=10).status_code == 200
                assert requests.get(found, timeout=10).status_code == 404
        metrics = requests.get(f"{other.url}/metrics", timeout=10).text
    assert metric_total(metrics, "database_read_fallbacks_total", reason="read_your_writes") >= 10
    assert metric_total(metrics, "database_reads_total", database="replica1") >= 5
    # Paused for a few seconds, then replaying again: the last check's lag, well under a minute.
    assert 0 <= metric_total(metrics, "database_replica_lag_seconds", replica="replica1") < 60


@pytest.mark.one_driver
def test_an_import_the_worker_runs_counts_as_its_senders_write(replicated, database):
    app = replicated.app(database)
    writer = writer_of(app)
    client = app.test_client(use_cookies=False)
    store = client.post("/store", json={"name": "Books"}, headers=writer).get_json()
    taken = client.post(
        f"/store/{store['id']}/item/import", data="name,price\nNovel,9.99\n",
        content_type="text/csv", headers=writer,
    )  # fmt: skip
    assert taken.status_code == 202
    noted = "SELECT written_at FROM recent_writes"
    (sent_at,) = replicated.on(replicated.primary, noted)[0]
    app.extensions["replication"].notes.taken_at.clear()  # the worker's process has noted nothing
    with app.app_context():  # the worker's part
        assert run_import(taken.get_json()["id"])
    # Its reads then wait for the items as for a write of theirs, however late the run.
    assert replicated.on(replicated.primary, noted)[0][0] > sent_at
    items = client.get(f"/store/{store['id']}/item", headers=writer).get_json()
    assert [item["name"] for item in items] == ["Novel"]


@pytest.mark.one_driver
def test_a_promoted_standby_is_left_out(database):
    """A standby promoted (a failover elsewhere, or by mistake) no longer follows the primary:
    it serves nothing once a check finds it out of recovery."""
    with ExitStack() as stack:
        own = Replication(stack)
        app, writer, client, store = a_store_on_both(own, database)
        assert client.get(f"/store/{store['id']}").status_code == 200
        served = reads_served("replica1")
        own.standby.promote()
        wait_for(lambda: not app.extensions["replication"].replicas.all[0].up,
                 "the promoted standby left out", 15)  # fmt: skip
        created = client.post("/store", json={"name": "After"}, headers=writer).get_json()
        anonymous = app.test_client(use_cookies=False)
        assert anonymous.get(f"/store/{created['id']}").status_code == 200
        assert reads_served("replica1") == served


@pytest.mark.one_driver
def test_a_silent_replica_holds_up_no_check_of_the_others(replicated, database):
    """A second replica that accepts connections and never answers (a silent server): its
    checks wait out the connect timeout, and the first standby goes on serving every read."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        silent_url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
        _app, _writer, client, store = a_store_on_both(replicated, database, 30.0, silent_url)
        served, reads = reads_served("replica1"), 0
        until = time.monotonic() + 3 * Settings().database_connect_timeout
        while time.monotonic() < until:
            assert client.get(f"/store/{store['id']}").status_code == 200
            reads += 1
            time.sleep(0.02)
    assert reads_served("replica1") - served == reads


TIMEOUT = Settings().database_replica_timeout_seconds
# Past the timeout: the deadline thread's granularity (0.1 s), the read again on the primary,
# and a loaded machine.
WITHIN_THE_TIMEOUT = TIMEOUT + 1.5


def timed(get) -> tuple[int, float]:
    started = time.monotonic()
    status = get().status_code
    return status, time.monotonic() - started


def test_a_frozen_replica_holds_a_read_no_longer_than_the_timeout(replicated, database):
    """Its processes stopped (SIGSTOP), the standby's kernel still acknowledges: no TCP timeout
    fires, and its statement timeout does not run. Our clock cuts the read off, the primary
    answers it, and the standby is left out until it answers its checks again."""
    _app, _writer, client, store = a_store_on_both(replicated, database)
    assert client.get(f"/store/{store['id']}").status_code == 200
    timed_out, on_replica, on_primary = (
        fallbacks("timeout"),
        reads_served("replica1"),
        reads_served("primary"),
    )
    with frozen(replicated.standby):
        answers = [timed(lambda: client.get(f"/store/{store['id']}")) for _ in range(10)]
        assert {status for status, _ in answers} == {200}
        assert max(took for _, took in answers) < WITHIN_THE_TIMEOUT, answers
        # The first one waited for the timeout; the standby was left out for the others.
        assert fallbacks("timeout") - timed_out == 1
        assert sum(took for _, took in answers[1:]) < 1.0, answers
    # Each read counted once, as the primary's.
    assert reads_served("primary") - on_primary == 10
    assert reads_served("replica1") == on_replica
    wait_for(lambda: client.get(f"/store/{store['id']}").status_code == 200
             and reads_served("replica1") > on_replica, "the standby again", 15)  # fmt: skip


def test_a_frozen_replica_holds_no_request_of_an_instance_past_the_timeout(replication):
    """gunicorn's two sync workers, as deployed (PgBouncer before each server): with the
    standby frozen, every request of the instance, /health and /metrics included, answers
    within the timeout; reads from the primary, and from the standby again once it thaws."""
    replication.reset()
    primary, replica = replication.urls("psycopg2+pgbouncer")
    env = server_env(primary, DATABASE_REPLICA_URLS=replica, DATABASE_REPLICA_MAX_LAG_SECONDS="30")
    with gunicorn(API, env, "--workers", "2") as server:
        writer = sign_up(server.url, "owner")
        store = requests.post(f"{server.url}/store", json={"name": "Lamps"}, headers=writer,
                              timeout=10).json()  # fmt: skip
        replication.wait_until_caught_up()

        def on_the_standby() -> float:
            metrics = requests.get(f"{server.url}/metrics", timeout=10).text
            return metric_total(metrics, "database_reads_total", database="replica1")

        # Both workers read from the standby (each has its own checks).
        for _ in range(20):
            assert requests.get(f"{server.url}/store", timeout=10).ok
        paths = [f"/store/{store['id']}", "/store", "/health", "/metrics"]

        def client(number: int) -> list[tuple[str, int, float]]:
            answers, until = [], time.monotonic() + 3 * TIMEOUT
            while time.monotonic() < until:
                path = paths[(number + len(answers)) % len(paths)]
                status, took = timed(partial(requests.get, f"{server.url}{path}", timeout=60))
                answers.append((path, status, took))
            return answers

        with frozen(replication.standby):
            answers = [answer for each in run_together(6, client) for answer in each]
        assert {status for _, status, _ in answers} == {200}
        slowest = max(answers, key=lambda answer: answer[2])
        assert slowest[2] < WITHIN_THE_TIMEOUT, slowest
        assert len(answers) > 6 * 3  # not one request each, held all along
        served = on_the_standby()
        wait_for(lambda: requests.get(f"{server.url}/store", timeout=10).ok
                 and on_the_standby() > served, "reads on the standby again", 15)  # fmt: skip


def a_long_query_on_the_standby(replicated, seconds: float) -> threading.Thread:
    """A report on the standby that reads items for `seconds` (holding its lock on them)."""
    report = threading.Thread(target=replicated.on, args=(
        replicated.standby,
        "SELECT pg_sleep(%s) FROM (SELECT count(*) FROM items) AS counted", seconds,
    ))  # fmt: skip
    report.start()
    wait_for(lambda: replicated.on(replicated.standby, "SELECT count(*) FROM pg_stat_activity "
             "WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active'")[0][0],
             "the report running", 10)  # fmt: skip
    return report


def a_store_of_many_items(replicated, database):
    """As a_store_on_both, with pages of items for a VACUUM to cut off the table's end."""
    app, writer, client, store = a_store_on_both(replicated, database)
    many = "SELECT 'Item ' || n, 1, %s FROM generate_series(1, 5000) AS n"
    replicated.on(replicated.primary, f"INSERT INTO items (name, price, store_id) {many}",
                  store["id"])  # fmt: skip
    replicated.wait_until_caught_up()
    return app, writer, client, store


def purged(replicated) -> None:
    """The items deleted, before the report: its snapshot needs none of their rows (as with
    hot_standby_feedback), so only the VACUUM's lock can conflict with it."""
    replicated.on(replicated.primary, "DELETE FROM items")
    replicated.wait_until_caught_up()


def test_a_read_queued_behind_replay_on_the_replica_is_answered_from_the_primary(
    replicated, database
):
    """PostgreSQL's defaults on the standby (max_standby_streaming_delay 30 s): a report reads
    items there while the primary purges the store's items and a VACUUM cuts off the table's
    empty end (explicitly here; the tables' own setting stops a plain VACUUM). Replay waits
    for the report's lock, and every read of items there queues behind it: our clock cuts it
    off, the primary answers, and the standby serves again once replay moved on."""
    _app, _writer, client, store = a_store_of_many_items(replicated, database)
    items = f"/store/{store['id']}/item"
    assert client.get(items).status_code == 200
    timed_out, on_replica = fallbacks("timeout"), reads_served("replica1")
    purged(replicated)
    report = a_long_query_on_the_standby(replicated, 4 * TIMEOUT)
    replicated.on(replicated.primary, "VACUUM (TRUNCATE) items")
    answers = []
    while report.is_alive():
        answers.append(timed(lambda: client.get(items)))
    report.join()
    assert {status for status, _ in answers} == {200}
    assert max(took for _, took in answers) < WITHIN_THE_TIMEOUT, answers
    assert fallbacks("timeout") > timed_out
    wait_for(lambda: client.get(items).status_code == 200
             and reads_served("replica1") > on_replica, "the standby again", 15)  # fmt: skip


# What keeps replay from waiting is the table's storage setting, on the servers; the reads
# only look, and the module's other tests take reads on the standby on every path.
@pytest.mark.each_driver_once
def test_a_vacuum_after_a_purge_holds_up_no_read_on_the_replica(replicated, database):
    """items keeps its empty end (vacuum_truncate off): the VACUUM takes no lock for replay
    to wait on, and the standby serves every read during the report."""
    _app, _writer, client, store = a_store_of_many_items(replicated, database)
    items = f"/store/{store['id']}/item"
    on_replica = reads_served("replica1")
    wait_for(lambda: client.get(items).status_code == 200
             and reads_served("replica1") > on_replica, "reads on the standby", 15)  # fmt: skip
    timed_out, on_replica = fallbacks("timeout"), reads_served("replica1")
    purged(replicated)
    report = a_long_query_on_the_standby(replicated, 2 * TIMEOUT)
    replicated.on(replicated.primary, "VACUUM items")
    reads = 0
    while report.is_alive():
        status, took = timed(lambda: client.get(items))
        assert (status, took < 1.0) == (200, True)
        reads += 1
    report.join()
    assert fallbacks("timeout") == timed_out
    assert reads_served("replica1") - on_replica == reads


@pytest.fixture
def replica_log(caplog) -> Iterator[Callable[[], str]]:
    """What the replicas' logger said during the test (it propagates nowhere pytest sees)."""
    logger = logging.getLogger("stores.replicas")
    logger.addHandler(caplog.handler)
    yield lambda: "\n".join(record.getMessage() for record in caplog.records)
    logger.removeHandler(caplog.handler)


def read_after_checks(app, read: Callable[[], object]) -> list:
    """`read()` (of the metrics) right after each of the app's own checks of its standbys:
    other apps of this process, still checking their own replica1, set the same gauges in
    between."""
    replicas = app.extensions["replication"].replicas
    show, readings = replicas.on_check, []

    def show_and_read(replica) -> None:
        show(replica)
        readings.append(read())

    replicas.on_check = show_and_read
    return readings


def refusals_shown(app) -> list[set[str]]:
    """The reasons the metric shows replica1 refused for, after each of the app's checks."""
    gauge = partial(REGISTRY.get_sample_value, "database_replica_refused")
    return read_after_checks(app, lambda: {
        reason for reason in REFUSALS if gauge({"replica": "replica1", "reason": reason}) == 1
    })  # fmt: skip


def refused(app, reason: str, shown: list[set[str]]) -> bool:
    """Whether the app's first replica is refused for `reason`, and the metric said so after
    the app's last check."""
    replica = app.extensions["replication"].replicas.all[0]
    return replica.refused == reason and bool(shown) and shown[-1] == {reason}


def test_another_cluster_in_recovery_is_refused(replicated, database, replica_log):
    """A server of its own initdb, with the same schema, put in recovery: it answers as a
    standby, but its system identifier is not the primary's. Not one read goes to it."""
    with throwaway_postgres() as other:
        migrate(other)
        replicated.on(other, "INSERT INTO stores (name) VALUES ('Impostor')")
        put_in_recovery(other)
        replicated.on(replicated.primary, "INSERT INTO stores (name) VALUES ('Real')")
        primary = replicated.url(replicated.primary, database)
        settings = Settings(database_url=primary,
                            database_replica_urls=replicated.url(other, database))  # fmt: skip
        app = create_app(settings, TESTING=True)
        shown = refusals_shown(app)
        client = app.test_client(use_cookies=False)
        refusals = fallbacks("refused")
        names = {client.get("/store/1").get_json()["name"] for _ in range(20)}
        assert names == {"Real"}
        assert fallbacks("refused") - refusals == 20
        wait_for(lambda: refused(app, "other_cluster", shown), "the metric", 5)
    assert "database replica replica1 is refused: it is another cluster" in replica_log()


@pytest.mark.one_driver
def test_a_standby_promoted_and_put_back_without_a_rewind_is_refused(database, replica_log):
    """Promoted, written to, and put back in recovery without pg_rewind: it follows the
    primary's configuration but cannot stream ("highest timeline 1 of the primary is behind
    recovery timeline 2"), and answers with rows the primary never had."""
    with ExitStack() as stack:
        own = Replication(stack)
        app, _writer, client, store = a_store_on_both(own, database)
        shown = refusals_shown(app)
        served = reads_served("replica1")
        assert client.get(f"/store/{store['id']}").status_code == 200
        assert reads_served("replica1") == served + 1
        own.standby.promote()
        own.on(own.standby, "UPDATE stores SET name = 'Diverged'")
        put_in_recovery(own.standby)
        wait_for(lambda: refused(app, "later_timeline", shown), "the standby refused", 15)
        names = {client.get(f"/store/{store['id']}").get_json()["name"] for _ in range(20)}
        assert names == {"Lamps"}
    assert "its timeline 2 is later than the primary's 1" in replica_log()


@pytest.mark.one_driver
def test_the_lag_of_a_replica_far_behind_is_a_number(replicated, database):
    """Up, with its replay paused while the primary writes: its lag grows past the maximum,
    second by second, in the gauge too (+Inf says down)."""
    app = replicated.app(database, max_lag_seconds=2.0)
    serving(app)
    replica = app.extensions["replication"].replicas.all[0]

    shown = read_after_checks(app, lambda: REGISTRY.get_sample_value(
        "database_replica_lag_seconds", {"replica": "replica1"}))  # fmt: skip

    def lag() -> float:
        replicated.on(replicated.primary, "INSERT INTO stores (name) VALUES (gen_random_uuid())")
        return shown[-1] if shown else 0.0  # no check since: none shown yet

    with replicated.replay_paused():
        wait_for(lambda: 6 <= lag() < math.inf and 6 <= replica.lag_seconds < 60,
                 "a lag of 6 s and more", 20)  # fmt: skip
        assert replica.up
        assert replica.lag_known


def test_a_maximum_lag_under_two_seconds_is_refused_at_start():
    """Lag is sampled every second: a standby replaying close behind a busy primary reads 1-2 s
    behind, and would serve nothing under a shorter maximum."""
    with pytest.raises(SettingsError, match="DATABASE_REPLICA_MAX_LAG_SECONDS"):
        load_settings(database_replica_max_lag_seconds=1.5)
    assert load_settings(database_replica_max_lag_seconds=2).database_replica_max_lag_seconds == 2
