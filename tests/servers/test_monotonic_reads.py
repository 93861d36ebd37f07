"""Monotonic reads (replication.routing), on real servers: a primary and two hot standbys
streaming from it, with each driver and through PgBouncer. Each process of the API sees on its
own which standbys serve; with one standby's replay paused and resumed in turns, a reader known
by its token or by the cookie never reads an older state than it was answered before, whichever
instance and worker answers. Its normal read costs one look-up on the primary; a read the
primary answered is noted, and the reader is back on its standby once that has caught up."""

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from functools import partial

import pytest
import requests
from sqlalchemy import event
from support.http import metric_total, server_env, sign_up
from support.replication import Replication, reads_served, writer_of

from db import db
from tools.gunicorn_server import API, gunicorn
from tools.throwaway_patroni import wait_for

pytestmark = pytest.mark.pgbouncer_too

# The least the settings take: a paused standby is out within seconds, at a moment each
# process's own checks decide.
MAX_LAG_SECONDS = 2
PAUSED_SECONDS = 4.5
REPLAYING_SECONDS = 2.5
CYCLES = 4
REPLICAS = ("replica1", "replica2")


@pytest.fixture(scope="module")
def replication():
    with ExitStack() as stack:
        yield Replication(stack, standbys=2)


@pytest.fixture
def replicated(replication: Replication, database: str) -> Replication:
    replication.reset()
    return replication


def version(answer: requests.Response) -> int:
    assert answer.status_code == 200, answer.text
    return int(answer.json()["name"].removeprefix("version "))


def total(instances: tuple[str, ...], metric: str, database: str | None = None) -> float:
    """The sum of `metric` (of `database` if given) over the instances' /metrics."""
    labels = {"database": database} if database else {}
    return sum(
        metric_total(requests.get(f"{url}/metrics", timeout=10).text, metric, **labels)
        for url in instances
    )


def went_back(versions: list[int]) -> list[tuple[int, int, int]]:
    """Each (read number, version, the older version the next read gave)."""
    return [
        (number, seen, then)
        for number, (seen, then) in enumerate(itertools.pairwise(versions))
        if then < seen
    ]


# 28 s of paused and replaying standbys: psycopg2 directly and psycopg through PgBouncer. What
# the drivers and PgBouncer's transaction pooling could change is what a read does on its way,
# and the quicker tests below check that on all four paths: a read's one look-up of its
# reader's writes and which engine answers it, the noting of a read the primary answered and
# the way home, the cookie. What this one adds, the order of reads across instances and
# workers while standbys drop out and come back, is the routing's, whichever connection.
@pytest.mark.each_driver_once
def test_a_known_reader_never_reads_an_older_state_across_instances(replicated, database):
    """Two instances, two gunicorn workers each; a writer renames a store to version 1, 2, ...;
    a reader by token and a browser by the cookie of a write of its own read it in turns
    from each instance while one standby's replay is paused, then resumed, then the other's."""
    primary, replicas = replicated.urls(database)
    env = server_env(
        primary, DATABASE_REPLICA_URLS=replicas,
        DATABASE_REPLICA_MAX_LAG_SECONDS=str(MAX_LAG_SECONDS),
    )  # fmt: skip
    with gunicorn(API, env, "--workers", "2") as one, gunicorn(API, env, "--workers", "2") as other:
        instances = (one.url, other.url)
        writer = sign_up(one.url, "writer")
        store = requests.post(
            f"{one.url}/store", json={"name": "version 0"}, headers=writer, timeout=10
        ).json()
        path = f"/store/{store['id']}"
        by_token = sign_up(one.url, "reader")
        browser = requests.Session()
        created = browser.post(f"{other.url}/store", json={"name": "The browser's"},
                               headers=sign_up(one.url, "browser"), timeout=10)  # fmt: skip
        assert created.status_code == 201
        replicated.wait_until_caught_up()

        def on_standbys() -> float:
            return sum(total(instances, "database_reads_total", name) for name in REPLICAS)

        wait_for(lambda: all(requests.get(f"{url}/store", timeout=10).ok for url in instances)
                 and on_standbys() > 0, "reads on the standbys", 15)  # fmt: skip
        served_before = on_standbys()
        stop = threading.Event()

        def write() -> None:
            number = 0
            while not stop.is_set():
                number += 1
                renamed = requests.put(f"{one.url}{path}", json={"name": f"version {number}"},
                                       headers=writer, timeout=10)  # fmt: skip
                assert renamed.status_code == 200, renamed.text
                time.sleep(0.05)

        def read(get, versions: list[int]) -> None:
            while not stop.is_set():
                versions.append(version(get(f"{instances[len(versions) % 2]}{path}", timeout=10)))
                time.sleep(0.01)

        by_token_saw, browser_saw = [], []
        token_reads = partial(requests.get, headers=by_token)
        with ThreadPoolExecutor(3) as pool:
            running = [
                pool.submit(write),
                pool.submit(read, token_reads, by_token_saw),
                pool.submit(read, browser.get, browser_saw),
            ]
            try:
                for cycle in range(CYCLES):
                    with replicated.replay_paused(replicated.standbys[cycle % 2]):
                        time.sleep(PAUSED_SECONDS)
                    time.sleep(REPLAYING_SECONDS)
            finally:
                stop.set()
            for each in running:
                each.result()  # what failed in a thread fails the test
        served = on_standbys() - served_before
        fallbacks = total(instances, "database_read_fallbacks_total")
    for reader, saw in (("token", by_token_saw), ("cookie", browser_saw)):
        assert len(saw) > 100, (reader, saw)
        assert saw[-1] > saw[0], (reader, saw)
        assert went_back(saw) == [], f"the reader by {reader} went back in time"
    # Both ways were taken: standbys, and the primary while one was out.
    assert served > 100
    assert fallbacks > 0


def test_a_known_readers_read_costs_one_look_up_and_writes_nothing(replicated, database):
    app = replicated.app(database)
    reader = writer_of(app, "reader")
    client = app.test_client(use_cookies=False)
    store = client.post("/store", json={"name": "Lamps"}, headers=writer_of(app)).get_json()
    replicated.wait_until_caught_up()
    with app.app_context():
        engines = {name: db.engines[name] for name in ("reads", *REPLICAS)}
        engines["primary"] = db.engine
    sent = {name: [] for name in engines}

    def recorder(name: str):
        def keep(_connection, _cursor, statement, *_args) -> None:
            if threading.current_thread() is threading.main_thread():  # not the checks
                sent[name].append(statement)

        return keep

    listeners = {name: recorder(name) for name in engines}
    routing = app.extensions["replication"]
    home = routing.home_of(int(client.get("/user/me", headers=reader).get_json()["id"]))
    wait_for(lambda: client.get(f"/store/{store['id']}", headers=reader).status_code == 200
             and routing.replicas.serves(home), "the reader's standby serving", 15)  # fmt: skip
    for name, engine in engines.items():
        event.listen(engine, "before_cursor_execute", listeners[name])
    try:
        assert client.get(f"/store/{store['id']}", headers=reader).status_code == 200
    finally:
        for name, engine in engines.items():
            event.remove(engine, "before_cursor_execute", listeners[name])
    other = next(name for name in REPLICAS if name != home.name)
    counts = {name: len(statements) for name, statements in sent.items()}
    assert counts == {"primary": 0, "reads": 1, home.name: 1, other: 0}, sent
    assert "recent_writes" in sent["reads"][0]
    assert "store_document" in sent[home.name][0]


def test_a_read_the_primary_answered_is_noted_and_the_reader_goes_home_again(replicated, database):
    """The reader's standby out (its replay paused past the maximum lag, the store renamed
    meanwhile): the primary answers, and notes it; once the standby caught up, the reader reads
    the new name from it."""
    app = replicated.app(database, MAX_LAG_SECONDS)
    reader = writer_of(app, "reader")
    client = app.test_client(use_cookies=False)
    writer = writer_of(app)
    store = client.post("/store", json={"name": "Lamps"}, headers=writer).get_json()
    replicated.wait_until_caught_up()
    reader_id = int(client.get("/user/me", headers=reader).get_json()["id"])
    routing = app.extensions["replication"]
    home = routing.home_of(reader_id)
    standby = replicated.standbys[int(home.name.removeprefix("replica")) - 1]
    noted = "SELECT coalesce(max(written_at), 'epoch') FROM recent_writes WHERE user_id = %s"
    read = f"/store/{store['id']}"
    wait_for(lambda: client.get(read, headers=reader).status_code == 200
             and routing.replicas.serves(home), "the reader's standby serving", 15)  # fmt: skip
    noted_before = replicated.on(replicated.primary, noted, reader_id)

    with replicated.replay_paused(standby):
        renamed = client.put(read, json={"name": "Lights"}, headers=writer)
        assert renamed.status_code == 200
        # Behind the primary's WAL by more than the maximum lag (an idle primary would leave
        # a paused standby caught up).
        wait_for(lambda: not routing.replicas.serves(home), "the standby out", 15)
        on_primary = reads_served("primary")
        assert client.get(read, headers=reader).get_json()["name"] == "Lights"
        assert reads_served("primary") == on_primary + 1
        assert replicated.on(replicated.primary, noted, reader_id) > noted_before

    served = reads_served(home.name)
    wait_for(lambda: client.get(read, headers=reader).get_json()["name"] == "Lights"
             and reads_served(home.name) > served, "reads on the reader's standby", 15)  # fmt: skip


def test_the_cookie_lasts_as_long_as_a_login_and_a_logout_clears_it(replicated, database):
    """It says only whose the reads are: kept past the window, a browser's reads stay
    monotonic; logged out, the browser reads as anyone."""
    app = replicated.app(database)
    writer = writer_of(app)
    browser = app.test_client()
    created = browser.post("/store", json={"name": "Lamps"}, headers=writer)
    assert created.status_code == 201
    assert f"Max-Age={30 * 86400}" in created.headers["Set-Cookie"]
    assert browser.get_cookie("read_your_writes") is not None
    assert browser.post("/logout", headers=writer).status_code == 200
    assert browser.get_cookie("read_your_writes") is None


def test_a_known_readers_export_read_on_the_primary_is_noted(replicated, database):
    """An export reads one snapshot on the primary, whichever standby the reader's other reads
    go to: the primary's state, noted as any read it answered."""
    app = replicated.app(database)
    reader = writer_of(app, "reader")
    client = app.test_client(use_cookies=False)
    store = client.post("/store", json={"name": "Lamps"}, headers=writer_of(app)).get_json()
    replicated.wait_until_caught_up()
    reader_id = int(client.get("/user/me", headers=reader).get_json()["id"])
    routing = app.extensions["replication"]
    wait_for(lambda: client.get(f"/store/{store['id']}", headers=reader).status_code == 200
             and routing.replicas.serves(routing.home_of(reader_id)), "the reader's standby "
             "serving", 15)  # fmt: skip
    # Whatever the primary answered it until then forgotten: its reads from now on count.
    replicated.on(replicated.primary, "DELETE FROM recent_writes WHERE user_id = %s", reader_id)
    routing.notes.taken_at.clear()
    notes = "SELECT count(*) FROM recent_writes WHERE user_id = %s"
    exported = client.get(f"/store/{store['id']}/item/export", headers=reader)
    assert exported.status_code == 200
    assert replicated.on(replicated.primary, notes, reader_id) == [(1,)]
