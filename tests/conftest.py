import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import flask_migrate
import pytest
import requests
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from helpers import PASSWORD, bearer_of
from sqlalchemy import Connection, Engine, event, text

from app import create_app
from auth import issue_tokens, limiter
from db import db
from models import UserModel
from tools.gunicorn_server import API, gunicorn
from tools.throwaway_postgres import throwaway_postgres

ROOT = Path(__file__).resolve().parent.parent
# Shared by the test apps and the gunicorn servers, so tokens made in one work in the other.
JWT_SECRET = "a-test-secret-of-more-than-32-bytes-for-signing-jwts"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
    else:
        with throwaway_postgres() as cluster:
            yield cluster.url


def migrated_app(url: str) -> Flask:
    app = create_app(url, TESTING=True, JWT_SECRET_KEY=JWT_SECRET)
    with app.app_context():
        flask_migrate.upgrade(directory=str(ROOT / "migrations"))
    return app


@pytest.fixture(scope="session")
def postgres_app(postgres_url: str) -> Flask:
    return migrated_app(postgres_url)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.db'}"


@pytest.fixture(scope="session")
def sqlite_app(sqlite_url: str) -> Flask:
    return migrated_app(sqlite_url)


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
        # Tables with AUTOINCREMENT (users) keep counting here.
        connection.execute(text("DELETE FROM sqlite_sequence"))


@pytest.fixture
def app(database: str, request: pytest.FixtureRequest) -> Flask:
    """The app on an empty database, ids starting from 1 again."""
    app = request.getfixturevalue(f"{database}_app")
    with app.app_context(), db.engine.begin() as connection:
        reset_data(connection)
    limiter.reset()
    # No app context stays pushed: each request gets its own, as on a server.
    return app


@pytest.fixture
def engine(app: Flask) -> Engine:
    with app.app_context():
        return db.engine


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
def server_env():
    """The environment a gunicorn server of the suite needs, on the given database."""

    def env(database_url: str, **variables: str) -> dict[str, str]:
        return {"DATABASE_URL": database_url, "JWT_SECRET_KEY": JWT_SECRET, **variables}

    return env


@pytest.fixture(scope="session")
def live_server(postgres_app: Flask, postgres_url: str, server_env) -> Iterator[str]:
    """The real app under gunicorn, several workers, on PostgreSQL; yields its base URL."""
    with gunicorn(API, server_env(postgres_url), "--workers", "4") as server:
        yield server.url


@pytest.fixture(scope="session")
def sqlite_live_server(sqlite_app: Flask, sqlite_url: str, server_env) -> Iterator[str]:
    """The same on the SQLite default, with one worker: SQLite has one writer at a time."""
    with gunicorn(API, server_env(sqlite_url), "--workers", "1") as server:
        yield server.url
