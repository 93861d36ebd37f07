import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import cached_property
from pathlib import Path

import flask_migrate
import pytest
import requests
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url, text
from support import JWT_SECRET, PASSWORD, bearer_of
from support.http import server_env

from app import create_app
from config.settings import DEFAULT_POSTGRES_DRIVER, Settings
from connections.options import engine_options
from db import begin_transactions, configure_sqlite, db
from models import UserModel
from security.tokens import issue_tokens
from tools.gunicorn_server import API, gunicorn
from tools.throwaway_postgres import throwaway_pgbouncer, throwaway_postgres

ROOT = Path(__file__).resolve().parent.parent


# Every test that touches the database runs with each PostgreSQL driver; TEST_POSTGRES_DRIVERS
# narrows that down for a quicker run by hand, e.g. TEST_POSTGRES_DRIVERS=psycopg.
POSTGRES_DRIVERS = os.environ.get("TEST_POSTGRES_DRIVERS", "psycopg psycopg2").split()
THROUGH_PGBOUNCER = "+pgbouncer"


# What a test needs, by the directory it is in; each is a marker too (pyproject.toml).
GROUPS = ("unit", "api", "database", "servers", "browser", "contract")
TESTS = Path(__file__).resolve().parent


# The modules of the longest tests (20-45 s each), longest first, run before all others. xdist
# (--dist worksteal) hands each worker a half of the run in this order, and a worker that is
# done takes tests from the end of the other's: the run then ends on short tests, not on one
# long test alone while the other worker idles. Whole modules: their module-scoped servers
# (test_monotonic_reads.py's replicas) still start once.
STARTED_FIRST = (
    "contract/test_contract.py",
    "servers/test_failover.py",
    "servers/test_backup_loss.py",
    "servers/test_monotonic_reads.py",
    "servers/test_partition.py",
    "servers/test_clone.py",
    "database/test_catalogue_files.py",
    "database/test_plans.py",
    "servers/test_catalogue_server.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = item.path.relative_to(TESTS).parts[0]
        assert group in GROUPS, f"{item.path}: tests live in one of {GROUPS}"
        item.add_marker(group)
    rank = {TESTS / path: number for number, path in enumerate(STARTED_FIRST)}
    assert all(path.exists() for path in rank), "STARTED_FIRST names a module that moved"
    items.sort(key=lambda item: rank.get(item.path, len(rank)))  # stable: the rest as collected


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`database` is a driver ("psycopg", "psycopg2"), "sqlite" for tests marked sqlite_too,
    and a driver behind PgBouncer ("psycopg2+pgbouncer") for tests marked pgbouncer_too;
    tests marked one_driver run with one driver, the default one if the run has it; tests
    marked each_driver_once with that one directly and each other through PgBouncer."""
    if "database" in metafunc.fixturenames:
        marked_with = metafunc.definition.get_closest_marker
        databases = list(POSTGRES_DRIVERS)
        if marked_with("one_driver") or marked_with("each_driver_once"):
            databases = [
                DEFAULT_POSTGRES_DRIVER if DEFAULT_POSTGRES_DRIVER in databases else databases[0]
            ]
        if marked_with("sqlite_too"):
            databases.append("sqlite")
        if marked_with("each_driver_once"):
            # A run with one driver still takes PgBouncer's path, with that driver.
            others = [driver for driver in POSTGRES_DRIVERS if driver != databases[0]]
            databases += [driver + THROUGH_PGBOUNCER for driver in others or databases[:1]]
        elif marked_with("pgbouncer_too"):
            databases += [driver + THROUGH_PGBOUNCER for driver in POSTGRES_DRIVERS]
        # `-m sqlite` selects the tests that need no database server, `-m "not pgbouncer"`
        # leaves PgBouncer out (make test-quick).
        marked = [
            pytest.param(each, marks=pytest.mark.sqlite)
            if each == "sqlite"
            else pytest.param(each, marks=pytest.mark.pgbouncer)
            if each.endswith(THROUGH_PGBOUNCER)
            else each
            for each in databases
        ]
        metafunc.parametrize("database", marked, indirect=True)


@pytest.fixture
def database(request: pytest.FixtureRequest) -> str:
    return request.param


def migrated_app(url: str, **settings: str) -> Flask:
    """The app on `url` (and `settings`, by field name), migrated to the newest revision."""
    # Argon2 at its cheapest: the suite's hundreds of sign-ups and wrong passwords would
    # otherwise spend minutes hashing. The servers it starts under gunicorn hash as
    # deployed.
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    app = create_app(
        Settings(database_url=url, **settings),
        TESTING=True,
        JWT_SECRET_KEY=JWT_SECRET,
        PASSWORD_HASHER=cheap,
    )
    with app.app_context():
        flask_migrate.upgrade(directory=str(ROOT / "migrations"))
    return app


class Backends:
    """The suite's databases and the servers on them, each made once, when first needed."""

    def __init__(self, sqlite_file: Path, stack: ExitStack) -> None:
        self.sqlite_file, self.stack = sqlite_file, stack
        self.pgbouncer_port: int | None = None
        self.apps: dict[str, Flask] = {}
        self.engines: dict[str, Engine] = {}
        self.servers: dict[str, str] = {}

    @cached_property
    def postgres(self) -> URL:
        """The suite's PostgreSQL ($TEST_DATABASE_URL, or a throwaway cluster), started when
        a test first needs it: a run of SQLite tests alone starts no server."""
        if url := os.environ.get("TEST_DATABASE_URL"):
            return make_url(url)
        return make_url(self.stack.enter_context(throwaway_postgres()).url())

    def url(self, database: str) -> str:
        """Where the app of `database` connects: through PgBouncer for "driver+pgbouncer"."""
        if database == "sqlite":
            return f"sqlite:///{self.sqlite_file}"
        driver, _, through = database.partition("+")
        url = self.postgres.set(drivername=f"postgresql+{driver}")
        if through:
            url = url.set(host="127.0.0.1", port=self.pgbouncer())
        return url.render_as_string(hide_password=False)

    def pgbouncer(self) -> int:
        if self.pgbouncer_port is None:
            self.pgbouncer_port = self.stack.enter_context(throwaway_pgbouncer(self.postgres))
        return self.pgbouncer_port

    def app(self, database: str) -> Flask:
        """The app tests arrange and check with: straight on the database, not through PgBouncer."""
        direct = database.partition("+")[0]
        if direct not in self.apps:
            self.apps[direct] = migrated_app(self.url(direct))
        return self.apps[direct]

    def engine(self, database: str) -> Engine:
        """The engine tests arrange and check with, straight on the database: the app's
        options, SQLite's foreign keys and transactions (without them, SQLite commits each
        row of a seeding on its own), but no statement timeout: the app's bounds requests,
        not the seeding of 50,000 rows on a slow machine."""
        direct = database.partition("+")[0]
        if direct not in self.engines:
            url = self.url(direct)
            defaults = Settings()
            options = engine_options(
                url, defaults.database_connect_timeout, defaults.database_statement_timeout_ms
            )
            self.engines[direct] = create_engine(url, **options)
            configure_sqlite(self.engines[direct])
            begin_transactions(self.engines[direct], statement_timeout_ms=0)
        return self.engines[direct]

    def live_server(self, database: str) -> str:
        """The real app under gunicorn, several workers; its base URL."""
        if database not in self.servers:
            env = server_env(self.url(database))
            server = self.stack.enter_context(gunicorn(API, env, "--workers", "4"))
            self.servers[database] = server.url
        return self.servers[database]


@pytest.fixture(scope="session", autouse=True)
def erasure_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where the suite's apps and servers log erasures (ERASURE_LOG_PATH, which servers
    inherit): a file of the run's, not the checkout's instance/erasures.jsonl."""
    path = tmp_path_factory.mktemp("erasures") / "erasures.jsonl"
    saved = os.environ.get("ERASURE_LOG_PATH")
    os.environ["ERASURE_LOG_PATH"] = str(path)
    yield path
    if saved is None:
        del os.environ["ERASURE_LOG_PATH"]
    else:
        os.environ["ERASURE_LOG_PATH"] = saved


@pytest.fixture(scope="session")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    with ExitStack() as stack:
        yield Backends(tmp_path_factory.mktemp("sqlite") / "test.db", stack)


def reset_data(connection: Connection) -> None:
    tables = db.metadata.sorted_tables
    if connection.dialect.name == "postgresql":
        names = ", ".join(table.name for table in tables)
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    else:
        for table in reversed(tables):
            connection.execute(table.delete())
        # Tables with AUTOINCREMENT (users) keep counting here.
        connection.execute(text("DELETE FROM sqlite_sequence"))
    # The event feed's one row, as migration 0019 left it.
    connection.execute(text("INSERT INTO event_feed (id, head, pruned_through) VALUES (1, 0, 0)"))


@pytest.fixture
def new_database(backends) -> Iterator[URL]:
    """An empty database on the suite's PostgreSQL server."""
    with create_engine(backends.postgres, isolation_level="AUTOCOMMIT").connect() as server:
        server.exec_driver_sql("DROP DATABASE IF EXISTS scratch")
        server.exec_driver_sql("CREATE DATABASE scratch")
        yield backends.postgres.set(database="scratch")
        server.exec_driver_sql("DROP DATABASE scratch WITH (FORCE)")


@pytest.fixture
def app(database: str, backends: Backends) -> Flask:
    """The app on an empty database, ids starting from 1 again."""
    app = backends.app(database)
    with app.app_context(), db.engine.begin() as connection:
        reset_data(connection)
    # No app context stays pushed: each request gets its own, as on a server.
    return app


@pytest.fixture
def engine(app: Flask, database: str, backends: Backends) -> Engine:
    return backends.engine(database)


@pytest.fixture(scope="session")
def password_hash() -> str:
    """The hash of PASSWORD: users made by tests can log in, without paying for Argon2 each."""
    return PasswordHasher().hash(PASSWORD)


@pytest.fixture
def new_user(app: Flask, password_hash: str):
    """Add a user straight to the database: `new_user("alice", role="admin")`."""

    def add(username: str, role: str = "user") -> UserModel:
        with app.app_context():
            user = UserModel(
                username=username,
                email=f"{username}@example.com",
                password_hash=password_hash,
                role=role,
            )
            db.session.add(user)
            db.session.commit()
            return user

    return add


@pytest.fixture
def bearer(app: Flask):
    """Authorization headers for a user, as a client that logged in would send."""

    def headers(user: UserModel, fresh: bool = True) -> dict[str, str]:
        with app.test_request_context():
            return bearer_of(issue_tokens(user, fresh=fresh)["access_token"])

    return headers


@pytest.fixture
def admin_headers(new_user, bearer) -> dict[str, str]:
    """A fresh access token of an admin: allowed everything."""
    return bearer(new_user("admin", role="admin"))


@pytest.fixture
def client(app: Flask, admin_headers: dict[str, str]) -> FlaskClient:
    """A client signed in as an admin, with a fresh token."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = admin_headers["Authorization"]
    return client


@pytest.fixture
def http(admin_headers: dict[str, str]) -> requests.Session:
    """An HTTP session signed in as an admin, for a real server on the test database."""
    session = requests.Session()
    session.headers.update(admin_headers)
    return session


@pytest.fixture
def anonymous(app: Flask) -> FlaskClient:
    """A client that sends no token."""
    return app.test_client()


@pytest.fixture
def sql(engine: Engine):
    """Rows of a raw SQL query, straight from the database: `sql("SELECT ...")`."""

    def query(statement: str, **params) -> list[tuple]:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(statement), params)]

    return query


@pytest.fixture
def every_engine(app: Flask) -> list[Engine]:
    """The app's engines: the default one, and the one that GET and HEAD use (db.READS)."""
    with app.app_context():
        return list(db.engines.values())


@pytest.fixture
def statements(every_engine: list[Engine]):
    """The SQL statements sent while a block runs, with their parameters, on any engine:
    `with statements() as sent:`, then `sent` is a list of (statement, parameters)."""

    @contextmanager
    def record() -> Iterator[list[tuple[str, object]]]:
        sent: list[tuple[str, object]] = []

        def keep(_conn, _cursor, statement, parameters, *_args) -> None:
            sent.append((statement, parameters))

        for engine in every_engine:
            event.listen(engine, "before_cursor_execute", keep)
        try:
            yield sent
        finally:
            for engine in every_engine:
                event.remove(engine, "before_cursor_execute", keep)

    return record


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where tests leave what a person may want to look at: reports, screenshots."""
    directory = ROOT / "test-artifacts"
    directory.mkdir(exist_ok=True)
    return directory


@pytest.fixture
def database_url(app: Flask, database: str, backends: Backends) -> str:
    """The URL a server of this test's database connects to (through PgBouncer, if so)."""
    return backends.url(database)


@pytest.fixture
def live_server(app: Flask, database: str, backends: Backends) -> str:
    """The app under gunicorn with 4 workers, on this test's (emptied) database; its URL."""
    return backends.live_server(database)
