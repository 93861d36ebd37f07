import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import flask_migrate
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Connection, Engine, event, text

from app import create_app
from db import db
from tools.gunicorn_server import API, gunicorn
from tools.throwaway_postgres import throwaway_postgres

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
    else:
        with throwaway_postgres() as cluster:
            yield cluster.url


def migrated_app(url: str) -> Flask:
    app = create_app(url)
    app.config["TESTING"] = True
    with app.app_context():
        flask_migrate.upgrade(directory=str(ROOT / "migrations"))
    return app


@pytest.fixture(scope="session")
def postgres_app(postgres_url: str) -> Flask:
    return migrated_app(postgres_url)


@pytest.fixture(scope="session")
def sqlite_app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return migrated_app(f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.db'}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database" in metafunc.fixturenames:
        backends = ["postgres"]
        if metafunc.definition.get_closest_marker("sqlite_too"):
            backends.append("sqlite")
        metafunc.parametrize("database", backends, indirect=True)


@pytest.fixture
def database(request: pytest.FixtureRequest) -> str:
    return request.param


def reset_data(connection: Connection) -> None:
    tables = db.metadata.sorted_tables
    if connection.dialect.name == "postgresql":
        names = ", ".join(table.name for table in tables)
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    else:
        for table in reversed(tables):
            connection.execute(table.delete())


@pytest.fixture
def app(database: str, request: pytest.FixtureRequest) -> Flask:
    """The app on an empty database, ids starting from 1 again."""
    app = request.getfixturevalue(f"{database}_app")
    with app.app_context(), db.engine.begin() as connection:
        reset_data(connection)
    # No app context stays pushed: each request gets its own, as on a server.
    return app


@pytest.fixture
def engine(app: Flask) -> Engine:
    with app.app_context():
        return db.engine


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def sql(engine: Engine):
    """Rows of a raw SQL query, straight from the database: `sql("SELECT ...")`."""

    def query(statement: str, **params) -> list[tuple]:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(statement), params)]

    return query


@pytest.fixture
def statements(engine: Engine):
    """Count the SQL statements sent while a block runs: `with statements() as sent:`."""

    @contextmanager
    def count() -> Iterator[list[str]]:
        sent: list[str] = []

        def record(_conn, _cursor, statement, *_args) -> None:
            sent.append(statement)

        event.listen(engine, "before_cursor_execute", record)
        try:
            yield sent
        finally:
            event.remove(engine, "before_cursor_execute", record)

    return count


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where tests leave what a person may want to look at: reports, screenshots."""
    directory = ROOT / "test-artifacts"
    directory.mkdir(exist_ok=True)
    return directory


@pytest.fixture(scope="session")
def live_server(postgres_app: Flask, postgres_url: str) -> Iterator[str]:
    """The real app under gunicorn, several workers, on PostgreSQL; yields its base URL."""
    with gunicorn(API, {"DATABASE_URL": postgres_url}, "--workers", "4") as server:
        yield server.url
