"""What the server logs: never a password, its hash or an email, even when the database
fails in a way nobody planned for and quotes the row in its error."""

import pytest
import requests
from support import PASSWORD
from support.http import server_env

from tools.gunicorn_server import API, gunicorn

pytestmark = pytest.mark.sqlite_too

# A rule the API knows nothing of. PostgreSQL's error quotes the whole row in its DETAIL
# ("Failing row contains (..., alice.secret@example.com, $argon2id$...)").
FAILING_INSERT = {
    "postgresql": [
        "ALTER TABLE users ADD CONSTRAINT ck_users_unplanned"
        " CHECK (position('secret' in email) = 0)"
    ],
    "sqlite": [
        "CREATE TRIGGER refuse_users BEFORE INSERT ON users"
        " BEGIN SELECT RAISE(ABORT, 'a fault nobody planned for'); END",
    ],
}
DROP = {
    "postgresql": ["ALTER TABLE users DROP CONSTRAINT ck_users_unplanned"],
    "sqlite": ["DROP TRIGGER refuse_users"],
}
# What the log says instead: the kind of error, by code, and the rule's name where known.
LOGGED = {
    "postgresql": ["SQLSTATE 23514", "constraint ck_users_unplanned"],
    "sqlite": ["SQLSTATE SQLITE_CONSTRAINT_TRIGGER"],
}


@pytest.fixture
def users_insert_fails(engine):
    """Inserting a user fails in the database with an error the API has no answer for."""
    with engine.begin() as connection:
        for statement in FAILING_INSERT[engine.dialect.name]:
            connection.exec_driver_sql(statement)
    yield LOGGED[engine.dialect.name]
    with engine.begin() as connection:
        for statement in DROP[engine.dialect.name]:
            connection.exec_driver_sql(statement)


def test_an_unexpected_database_error_on_register_logs_no_secrets(
    database_url, users_insert_fails, tmp_path, sql
):
    log = tmp_path / "server.log"
    account = {"username": "alice", "email": "alice.secret@example.com", "password": PASSWORD}
    with (
        log.open("w") as server_log,
        gunicorn(API, server_env(database_url), "--workers", "1", stderr=server_log) as server,
    ):
        response = requests.post(f"{server.url}/register", json=account, timeout=30)

    assert response.status_code == 500  # the planted fault: a bug, as a 500 always is
    assert response.json()["code"] == 500
    logged = log.read_text()
    assert "unexpected database error" in logged  # the error was logged...
    assert response.headers["X-Request-ID"] in logged
    for known in ["INSERT INTO users", *users_insert_fails]:
        assert known in logged
    for secret in (PASSWORD, "alice.secret@example.com", "$argon2id$", "Failing row"):
        assert secret not in logged  # ...without the values
    assert sql("SELECT count(*) FROM users") == [(0,)]
