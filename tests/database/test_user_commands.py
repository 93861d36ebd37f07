"""`flask create-admin` and `flask prune-expired`."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert
from support import PASSWORD

from models import EventModel, IdempotencyKeyModel, ThrottleModel, TokenFamilyModel


@pytest.mark.sqlite_too
def test_create_admin_makes_a_new_user_who_can_log_in_as_admin(app, anonymous, sql):
    result = app.test_cli_runner().invoke(
        args=["create-admin", "carol", "--email", "carol@example.com"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )

    assert result.exit_code == 0, result.output
    assert "carol is an admin" in result.output
    assert PASSWORD not in result.output  # the prompt hides it
    assert sql("SELECT username, email, role FROM users") == [
        ("carol", "carol@example.com", "admin")
    ]
    login = anonymous.post("/login", json={"username": "carol", "password": PASSWORD})
    assert login.status_code == 200


@pytest.mark.sqlite_too
@pytest.mark.parametrize("written", ["bob", "Bob"])
def test_create_admin_promotes_an_existing_user(app, new_user, sql, written):
    new_user("bob")
    result = app.test_cli_runner().invoke(args=["create-admin", written])
    assert result.exit_code == 0, result.output
    assert sql("SELECT username, role FROM users") == [("bob", "admin")]


def test_create_admin_refuses_what_register_would(app, new_user, sql):
    new_user("bob")
    runner = app.test_cli_runner()
    weak = runner.invoke(
        args=["create-admin", "carol", "--email", "carol@example.com"], input="short\nshort\n"
    )
    taken_email = runner.invoke(
        args=["create-admin", "carol", "--email", "bob@example.com"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )

    assert weak.exit_code == 1
    assert "password: Length must be between 8 and 1024." in weak.output
    assert taken_email.exit_code == 1
    assert "A user with this email exists" in taken_email.output
    assert sql("SELECT username, role FROM users") == [("bob", "user")]


@pytest.mark.sqlite_too
def test_prune_drops_only_what_expired(app, engine, sql):
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            insert(TokenFamilyModel),
            [
                {"family": "expired", "expires_at": now - timedelta(minutes=1)},
                {"family": "still-valid", "expires_at": now + timedelta(days=1)},
            ],
        )
        later, earlier = now.timestamp() + 60, now.timestamp() - 60
        connection.execute(
            insert(ThrottleModel),
            [
                {"key": "over", "hits": 3, "window_ends_at": earlier, "blocked_until": earlier},
                {"key": "counting", "hits": 3, "window_ends_at": later, "blocked_until": 0},
                {"key": "waiting", "hits": 9, "window_ends_at": earlier, "blocked_until": later},
            ],
        )
        kept = {"scope": "user:1", "fingerprint": "", "status": 201, "headers": "{}", "body": ""}
        connection.execute(
            insert(IdempotencyKeyModel),
            [
                {**kept, "key": "old", "expires_at": earlier},
                {**kept, "key": "new", "expires_at": later},
            ],
        )
        event = {"type": "store.created", "resource_id": 1, "store_id": 1, "data": "{}"}
        connection.execute(
            insert(EventModel),
            [
                {**event, "occurred_at": now - timedelta(days=7, minutes=1)},
                {**event, "occurred_at": now - timedelta(days=6)},
            ],
        )

    result = app.test_cli_runner().invoke(args=["prune-expired"])

    assert result.exit_code == 0, result.output
    assert (
        "Pruned 1 token family(ies), 1 throttle count(s), 1 idempotency key(s) and 1 event(s)"
        in result.output
    )
    assert sql("SELECT family FROM token_families") == [("still-valid",)]
    assert sql("SELECT key FROM throttles ORDER BY key") == [("counting",), ("waiting",)]
    assert sql("SELECT key FROM idempotency_keys") == [("new",)]
    assert sql("SELECT position FROM events") == [(2,)]
    assert sql("SELECT pruned_through FROM event_feed") == [(1,)]
