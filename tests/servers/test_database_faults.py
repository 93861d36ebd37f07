"""The database goes away or fails mid-way: clients get a quick JSON 503, and nothing is lost."""

import time
from contextlib import nullcontext

import flask_migrate
import pytest
import requests
from sqlalchemy import create_engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool
from support.api import new_store
from support.http import metric_total, server_env, sign_up

from app import create_app
from config.settings import Settings
from connections.faults import ping_idle_connections
from jobs.purge import purge_expired
from tools.gunicorn_server import API, gunicorn
from tools.throwaway_postgres import free_port, throwaway_pgbouncer, throwaway_postgres


@pytest.fixture
def own_cluster(request):
    """A cluster this test may stop and start, migrated; the suite's other tests keep theirs."""
    with throwaway_postgres() as cluster:
        with create_app(Settings(database_url=cluster.url()), TESTING=True).app_context():
            flask_migrate.upgrade(directory=str(request.config.rootpath / "migrations"))
        yield cluster


def assert_quick_503(method: str, url: str, **kwargs) -> None:
    # Quick: within the connect timeout (3 s) and well before a client would give up.
    response = requests.request(method, url, timeout=10, **kwargs)
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["code"] == 503
    assert "Retry-After" in response.headers


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_requests_answer_503_while_the_database_is_down_then_recover(own_cluster, driver, tmp_path):
    log = tmp_path / "server.log"
    with (
        log.open("w") as server_log,
        gunicorn(
            # One worker: the reads after the restart reach the pools that lost their
            # connections (with two, a loaded machine once sent them all to the other one,
            # whose pool of reads had never connected: no reconnection to count).
            API,
            server_env(own_cluster.url(driver)),
            "--workers",
            "1",
            stderr=server_log,
        ) as server,
    ):
        signed_in = sign_up(server.url, "survivor")
        store = requests.post(
            f"{server.url}/store", json={"name": "Survivor"}, headers=signed_in
        ).json()
        assert requests.get(f"{server.url}/health").status_code == 200

        own_cluster.stop()
        try:
            assert_quick_503("GET", f"{server.url}/store/{store['id']}")
            assert_quick_503(
                "POST", f"{server.url}/store", json={"name": "Lost"}, headers=signed_in
            )
            assert_quick_503("GET", f"{server.url}/health")
        finally:
            own_cluster.start()

        # The same server process, not restarted, serves again.
        for _ in range(4):
            assert requests.get(f"{server.url}/store/{store['id']}").json()["name"] == "Survivor"
        assert requests.get(f"{server.url}/health").status_code == 200
        assert requests.get(f"{server.url}/store").json()[0]["name"] == "Survivor"

        # Operators see it: the failures by kind, the connections made again, and where
        # writes go (said once, not again on reconnecting to the same server).
        exposed = requests.get(f"{server.url}/metrics", timeout=10).text
        assert metric_total(exposed, "database_failures_total", kind="unavailable") >= 3
        assert metric_total(exposed, "database_reconnections_total") >= 1
    said = log.read_text().count(f"database writes go to 127.0.0.1:{own_cluster.port}")
    assert said == 1, log.read_text()


@pytest.mark.pgbouncer_too
def test_a_purge_cut_off_by_the_statement_timeout_leaves_its_batch_whole(
    database_url, engine, sql, monkeypatch
):
    sql_setup = """
        INSERT INTO stores (name, deleted_at, expire_time) VALUES ('Big', now(), now());
        INSERT INTO items (name, price, store_id)
            SELECT 'item ' || n, 1, 1 FROM generate_series(1, 50000) n;
        INSERT INTO tags (name, store_id) SELECT 'tag ' || n, 1 FROM generate_series(1, 10) n;
        INSERT INTO items_tags (item_id, tag_id) SELECT id, 1 + id %% 10 FROM items;
    """
    with engine.begin() as connection:
        connection.exec_driver_sql(sql_setup)
    # Statistics of the rows, as autovacuum has them by the time a store expires (days after
    # its rows were written): the database is shared with earlier tests, whose were of a few
    # rows, and a purge planned on those took over the 30 s timeout once, in a full run.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("ANALYZE items, items_tags, tags, stores")
    counts = "SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM items_tags)"
    before = sql(counts)

    # A statement timeout far below the time a batch needs cuts the first one off mid-way.
    # The timeout is set per transaction: PgBouncer refuses it as a startup parameter.
    impatient = Settings(database_url=database_url, database_statement_timeout_ms=20)
    with create_app(impatient, TESTING=True).app_context(), pytest.raises(OperationalError):
        purge_expired()

    assert before == [(50000, 50000)]
    assert sql(counts) == before
    assert sql("SELECT count(*) FROM tags") == [(10,)]
    # The next run, given the time, finishes it.
    with create_app(Settings(database_url=database_url), TESTING=True).app_context():
        assert purge_expired() == 1
    assert sql(counts) == [(0, 0)]
    assert sql("SELECT (SELECT count(*) FROM stores), (SELECT count(*) FROM tags)") == [(0, 0)]


def backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()


def terminate(engine, pid: int) -> None:
    """End a server process of the pool's, and wait until PostgreSQL has let it go."""
    with engine.connect() as connection:
        connection.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
        deadline = time.monotonic() + 30
        while connection.exec_driver_sql(
            f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
        ).scalar():
            assert time.monotonic() < deadline, f"backend {pid} still there after 30 s"
            connection.rollback()  # a new snapshot of pg_stat_activity
            time.sleep(0.01)


def test_an_idle_pooled_connection_the_server_dropped_is_replaced_before_use(database_url):
    engine = create_engine(database_url)
    ping_idle_connections(engine, idle_seconds=0)
    dropped = backend_pid(engine)
    terminate(create_engine(database_url, poolclass=NullPool), dropped)

    assert backend_pid(engine) != dropped  # pinged, found dead, replaced: no error


def test_a_busy_connection_is_not_pinged_and_a_drop_costs_one_error(database_url):
    engine = create_engine(database_url)
    ping_idle_connections(engine, idle_seconds=60)
    terminate(create_engine(database_url, poolclass=NullPool), backend_pid(engine))

    with pytest.raises(OperationalError):
        backend_pid(engine)
    backend_pid(engine)  # the pool was invalidated: the next use reconnects


def test_the_docs_need_no_database(unused_port_url):
    client = create_app(Settings(database_url=unused_port_url), TESTING=True).test_client()
    for path in ("/openapi.json", "/swagger-ui", "/swagger-ui-assets/swagger-ui-bundle.js"):
        assert client.get(path).status_code == 200, path
    assert client.get("/store").status_code == 503  # the data does


@pytest.fixture
def unused_port_url() -> str:
    """A PostgreSQL URL where nothing listens."""
    return f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"


@pytest.mark.pgbouncer_too
def test_a_read_stuck_behind_a_migrations_lock_answers_503_at_the_statement_timeout(
    database_url, client, engine
):
    store = new_store(client)
    env = server_env(database_url, DATABASE_STATEMENT_TIMEOUT_MS="500")
    with gunicorn(API, env, "--workers", "1") as server, engine.connect() as migration:
        migration.exec_driver_sql("LOCK TABLE stores IN ACCESS EXCLUSIVE MODE")
        try:
            for path in (f"/store/{store['id']}", "/store", "/item"):
                assert_quick_503("GET", f"{server.url}{path}")
        finally:
            migration.rollback()
        # The lock gone, the same worker and its connections serve again.
        assert requests.get(f"{server.url}/store/{store['id']}", timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("driver", "via"), [("psycopg2", "direct"), ("psycopg", "direct"), ("psycopg2", "pgbouncer")]
)
def test_a_hot_standby_serves_reads_answers_writes_503_and_takes_them_once_promoted(
    own_cluster, driver, via
):
    """As the API meets a demoted primary, or PgBouncer a host that is no longer the primary:
    a real streaming standby (pg_basebackup -R), then promoted as a failover would."""
    with gunicorn(API, server_env(own_cluster.url(driver)), "--workers", "1") as server:
        signed_in = sign_up(server.url, "standing-by")
        store = requests.post(f"{server.url}/store", json={"name": "Kept"}, headers=signed_in)
    with (
        throwaway_postgres(standby_of=own_cluster) as standby,
        throwaway_pgbouncer(make_url(standby.url(driver)))
        if via == "pgbouncer"
        else nullcontext() as bouncer_port,
    ):
        url = make_url(standby.url(driver)).set(port=bouncer_port or standby.port)
        env = server_env(url.render_as_string(hide_password=False))
        with gunicorn(API, env, "--workers", "1") as server:
            assert requests.get(f"{server.url}/store/{store.json()['id']}").status_code == 200
            for name in ("Refused", "Refused again"):
                assert_quick_503(
                    "POST", f"{server.url}/store", json={"name": name}, headers=signed_in
                )

            standby.promote()
            deadline = time.monotonic() + 5
            while (
                answer := requests.post(
                    f"{server.url}/store", json={"name": "Taken"}, headers=signed_in, timeout=10
                )
            ).status_code == 503:
                assert time.monotonic() < deadline, "no write taken 5 s after the promotion"
                time.sleep(0.1)
            assert answer.status_code == 201, answer.text
            names = [each["name"] for each in requests.get(f"{server.url}/store").json()]
            assert names == ["Kept", "Taken"]
