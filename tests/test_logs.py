"""What the server logs: never a password, its hash or an email, even when the database
fails in a way nobody planned for."""

import pytest
import requests
from helpers import PASSWORD, server_env

from tools.gunicorn_server import API, gunicorn

pytestmark = pytest.mark.sqlite_too

FAILING_INSERT = {
    "postgresql": [
        "CREATE FUNCTION refuse_users() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE EXCEPTION 'a fault nobody planned for'; END $$",
        "CREATE TRIGGER refuse_users BEFORE INSERT ON users"
        " FOR EACH ROW EXECUTE FUNCTION refuse_users()",
    ],
    "sqlite": [
        "CREATE TRIGGER refuse_users BEFORE INSERT ON users"
        " BEGIN SELECT RAISE(ABORT, 'a fault nobody planned for'); END",
    ],
}
DROP = {
    "postgresql": ["DROP TRIGGER refuse_users ON users", "DROP FUNCTION refuse_users()"],
    "sqlite": ["DROP TRIGGER refuse_users"],
}


@pytest.fixture
def users_insert_fails(engine):
    """Inserting a user fails in the database with an error the API has no answer for."""
    statements = FAILING_INSERT[engine.dialect.name]
    with engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)
    yield
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
    assert "a fault nobody planned for" in logged  # the error was logged...
    assert "INSERT INTO users" in logged
    for secret in (PASSWORD, "alice.secret@example.com", "$argon2id$"):
        assert secret not in logged  # ...without the values
    assert sql("SELECT count(*) FROM users") == [(0,)]
