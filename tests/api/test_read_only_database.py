"""A database that refuses writes (a hot standby, a demoted primary: SQLSTATE 25006) is
unavailable, not broken: 503 with Retry-After, and the pool lets its connections go, so that
the next request connects anew (and, with several hosts or PgBouncer, finds the primary)."""

import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, event
from support.api import assert_error
from support.http import metric_total

from db import db


@contextmanager
def refusing_writes(backends) -> Iterator[None]:
    """The whole server refuses writes, every session of it, until the block ends: as a
    standby does (default_transaction_read_only, reloaded into every backend)."""
    server = create_engine(backends.postgres, isolation_level="AUTOCOMMIT")

    def turn(setting: str, expected: str) -> None:
        with server.connect() as connection:
            connection.exec_driver_sql(setting)
            connection.exec_driver_sql("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 10
        while True:
            with server.connect() as connection:
                shown = connection.exec_driver_sql("SHOW default_transaction_read_only").scalar()
            if shown == expected:
                return
            assert time.monotonic() < deadline, f"the server still says {shown}"
            time.sleep(0.05)

    turn("ALTER SYSTEM SET default_transaction_read_only = on", "on")
    try:
        yield
    finally:
        turn("ALTER SYSTEM RESET default_transaction_read_only", "off")
        server.dispose()


def test_writes_to_a_server_refusing_them_answer_503_then_work_again(app, client, backends):
    assert client.post("/store", json={"name": "Before"}).status_code == 201
    with app.app_context():
        writes = db.engine
    connections_made = []

    def made(*_) -> None:
        connections_made.append(1)

    event.listen(writes, "connect", made)
    try:
        with refusing_writes(backends):
            # Reloaded into the backends between two requests: each new transaction is
            # read-only, the pooled connection's too.
            time.sleep(0.2)
            for name in ("During", "During again"):
                refused = client.post("/store", json={"name": name})
                body = assert_error(refused, 503, "unavailable")
                assert refused.headers["Retry-After"].isdigit(), body
        made_while_refused = len(connections_made)
        assert made_while_refused >= 1  # the first refusal dropped the pooled connection
        assert client.post("/store", json={"name": "After"}).status_code == 201
    finally:
        event.remove(writes, "connect", made)
    names = [store["name"] for store in client.get("/store").get_json()]
    assert names == ["Before", "After"]
    # Counted as its own kind of failure (the app in process counts in this process).
    failures = metric_total(
        client.get("/metrics").text, "database_failures_total", kind="read_only"
    )
    assert failures >= 2
