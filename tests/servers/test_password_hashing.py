"""Argon2 takes a tenth of a second or more: while a login or a sign-up hashes, it holds no
transaction, so no lock (on SQLite, not the database's write lock) and, through PgBouncer
in transaction mode, none of its few server connections."""

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from argon2 import PasswordHasher
from support import JWT_SECRET, PASSWORD

from app import create_app
from config.settings import Settings

pytestmark = [pytest.mark.sqlite_too, pytest.mark.pgbouncer_too]


class PausingHasher(PasswordHasher):
    """Argon2 that stops before hashing until told to go on: the test looks meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.hashing, self.go_on = threading.Event(), threading.Event()

    def pause(self) -> None:
        self.hashing.set()
        assert self.go_on.wait(60)

    def hash(self, password, *, salt=None) -> str:
        self.pause()
        return super().hash(password, salt=salt)

    def verify(self, hash, password) -> bool:
        self.pause()
        return super().verify(hash, password)


def transactions_held(engine) -> int:
    """How many transactions the database has open, other than the caller's own."""
    if engine.dialect.name == "sqlite":
        # A writer's BEGIN IMMEDIATE fails at once while anyone holds the write lock.
        other = sqlite3.connect(engine.url.database, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.rollback()
            return 0
        except sqlite3.OperationalError:
            return 1
        finally:
            other.close()
    with engine.connect() as connection:
        return connection.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            " AND xact_start IS NOT NULL AND pid <> pg_backend_pid()"
        ).scalar()


REQUESTS = {
    "login": ("/login", {"username": "alice", "password": PASSWORD}, 200),
    "register": (
        "/register",
        {"username": "bob", "email": "bob@example.com", "password": PASSWORD},
        201,
    ),
}


@pytest.mark.parametrize("request_name", list(REQUESTS))
def test_no_transaction_is_held_while_a_password_is_hashed(
    database_url, new_user, engine, request_name
):
    new_user("alice")
    hasher = PausingHasher()
    app = create_app(
        Settings(database_url=database_url),
        TESTING=True,
        JWT_SECRET_KEY=JWT_SECRET,
        PASSWORD_HASHER=hasher,
    )
    path, body, status = REQUESTS[request_name]
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(app.test_client().post, path, json=body)
        assert hasher.hashing.wait(60)
        try:
            held = transactions_held(engine)
        finally:
            hasher.go_on.set()
        assert answer.result(timeout=60).status_code == status
    assert held == 0
