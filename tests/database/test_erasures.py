"""An erasure (POST /store/<id>/purge) is recorded in the database and logged outside it, and
`flask apply-erasures` deletes again what a restore of the database brought back
(backups/erasures.py). tests/servers/test_restore_store.py restores real backups."""

import json
from datetime import datetime

import pytest
from sqlalchemy import text
from support.api import change_settings, new_item, new_store, purge, shown_time


@pytest.fixture
def log(app, tmp_path, monkeypatch):
    """This test's erasure log."""
    path = tmp_path / "erasures.jsonl"
    change_settings(monkeypatch, app, erasure_log_path=str(path))
    return path


def logged(log) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def apply_erasures(app) -> str:
    result = app.test_cli_runner().invoke(args=["apply-erasures"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.sqlite_too
def test_a_purge_request_is_recorded_once_and_logged(client, sql, log):
    store = new_store(client, "Erased")
    assert client.post("/store/999999/purge").status_code == 404

    assert client.post(f"/store/{store['id']}/purge").status_code == 202
    again = client.post(f"/store/{store['id']}/purge")  # before the purge: still there

    assert again.status_code == 202
    ((store_id, created_at, requested_at, requested_by),) = sql(
        "SELECT store_id, store_created_at, requested_at, requested_by FROM erasures"
    )
    assert (store_id, shown_time(created_at)) == (store["id"], store["created_at"])
    assert [requested_by] == [id_ for (id_,) in sql("SELECT id FROM users")]
    # A line per request: readers take each erasure once.
    first, second = logged(log)
    assert second == {**first, "requested_at": second["requested_at"]}
    line = first
    assert line["store_id"] == store["id"]
    assert shown_time(datetime.fromisoformat(line["store_created_at"])) == store["created_at"]
    assert datetime.fromisoformat(line["requested_at"]) == shown_and_parsed(requested_at)


def shown_and_parsed(value) -> datetime:
    """A time read by raw SQL (SQLite's: text), as an aware datetime."""
    return datetime.fromisoformat(shown_time(value).replace("Z", "+00:00"))


@pytest.mark.sqlite_too
def test_apply_erasures_deletes_what_a_restore_brought_back_and_nothing_else(
    app, client, engine, sql, log
):
    erased, taken, kept = (new_store(client, name) for name in ("Erased", "Taken", "Kept"))
    new_item(client, erased["id"])
    with engine.connect() as db:
        erased_row = db.execute(
            text("SELECT * FROM stores WHERE id = :id"), {"id": erased["id"]}
        ).mappings().one()  # fmt: skip
    for store in (erased, taken):
        assert client.post(f"/store/{store['id']}/purge").status_code == 202
    assert sorted(purge(app)) == [erased["id"], taken["id"]]
    # A restore of the database to before the requests: no erasures, the erased store back
    # whole; and a new store that took the other erased store's id.
    with engine.begin() as db:
        db.execute(text("DELETE FROM erasures"))
        columns = ", ".join(erased_row)
        values = ", ".join(f":{column}" for column in erased_row)
        db.execute(text(f"INSERT INTO stores ({columns}) VALUES ({values})"), dict(erased_row))
        db.execute(
            text("INSERT INTO items (name, price, store_id) VALUES ('Back', 1, :id)"),
            {"id": erased["id"]},
        )
        db.execute(text("INSERT INTO stores (id, name) VALUES (:id, 'New')"), {"id": taken["id"]})
    with log.open("a") as file:
        file.write('{"store_id": 12, "store_cre')  # a write cut off

    first = apply_erasures(app)

    assert "Skipped 1 torn line(s)" in first
    assert f"2 erasure(s) of {log} put back in the database" in first
    assert f"purged 1 erased store(s) {erased['id']}." in first
    assert sql("SELECT id, name FROM stores ORDER BY id") == [
        (taken["id"], "New"),
        (kept["id"], "Kept"),
    ]
    assert sql("SELECT count(*) FROM items") == [(0,)]
    assert sorted(sql("SELECT store_id FROM erasures")) == [(erased["id"],), (taken["id"],)]

    second = apply_erasures(app)

    assert second.splitlines() == [
        f"Skipped 1 torn line(s) of {log}.",
        f"0 erasure(s) of {log} put back in the database, 0 of the database's logged there;"
        " purged 0 erased store(s).",
    ]
    assert len(sql("SELECT id FROM stores")) == 2
    # The next erasure's line is whole, after the torn one.
    assert client.post(f"/store/{kept['id']}/purge").status_code == 202
    lines = log.read_text().splitlines()
    assert json.loads(lines[-1])["store_id"] == kept["id"]


def test_a_log_that_cannot_be_written_refuses_the_erasure_whole_and_the_retry_does_it(
    app, client, sql, log, tmp_path, monkeypatch
):
    """Even with an Idempotency-Key: the 503 keeps no answer to replay, so the retry runs the
    request again, and logs it."""
    store = new_store(client, "Erased")
    in_a_file = tmp_path / "a-file"
    in_a_file.write_text("")
    change_settings(monkeypatch, app, erasure_log_path=str(in_a_file / "erasures.jsonl"))
    keyed = {"Idempotency-Key": "erase-once"}

    refused = client.post(f"/store/{store['id']}/purge", headers=keyed)

    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "5"
    assert "send the request again" in refused.get_json()["message"]
    assert sql("SELECT store_id FROM erasures") == []  # nothing committed
    assert client.get(f"/store/{store['id']}").status_code == 200
    change_settings(monkeypatch, app, erasure_log_path=str(log))
    again = client.post(f"/store/{store['id']}/purge", headers=keyed)
    assert again.status_code == 202
    assert "Idempotent-Replayed" not in again.headers
    assert [line["store_id"] for line in logged(log)] == [store["id"]]
    assert sql("SELECT store_id FROM erasures") == [(store["id"],)]


@pytest.mark.parametrize(
    "line",
    [
        '{"store_id": 99999999999, "store_created_at": "2026-01-01T00:00:00+00:00", '
        '"requested_at": "2026-01-01T00:00:00+00:00"}',
        '{"store_id": 1e999, "store_created_at": "2026-01-01T00:00:00+00:00", '
        '"requested_at": "2026-01-01T00:00:00+00:00"}',
        '{"store_id": true, "store_created_at": "2026-01-01T00:00:00+00:00", '
        '"requested_at": "2026-01-01T00:00:00+00:00"}',
        '{"store_id": 1, "store_created_at": "0001-01-01T00:00:00+01:00", '
        '"requested_at": "2026-01-01T00:00:00+00:00"}',
        "[" * 100_000 + "]" * 100_000,  # deeper than Python's recursion
    ],
)
def test_a_line_no_store_could_have_is_skipped_not_fatal(app, log, line):
    """apply-erasures runs at every start of the API: a line written by hand must not stop it."""
    log.write_text(line + "\n")
    assert f"Skipped 1 torn line(s) of {log}." in apply_erasures(app)
