"""Arrange in process, through the API's test client, as a client would."""

from datetime import UTC, datetime

from flask.testing import FlaskClient

from schemas.field_types import TIMESTAMP_FORMAT


def signed_in(app, headers: dict[str, str]) -> FlaskClient:
    """A client of `app` that sends these Authorization headers with every request."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = headers["Authorization"]
    return client


def created(response) -> dict:
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def new_store(client: FlaskClient, name: str = "Books") -> dict:
    return created(client.post("/store", json={"name": name}))


def new_item(client: FlaskClient, store_id: int, name: str = "Novel", price=9.99, **fields) -> dict:
    body = {"name": name, "price": price, "store_id": store_id, **fields}
    return created(client.post("/item", json=body))


def new_tag(client: FlaskClient, store_id: int, name: str = "fiction") -> dict:
    return created(client.post(f"/store/{store_id}/tag", json={"name": name}))


def link(client: FlaskClient, item_id: int, tag_id: int) -> dict:
    return created(client.post(f"/item/{item_id}/tag/{tag_id}"))


def assert_error(response, status: int, message_part: str | None = None) -> dict:
    """The one error shape: JSON {code, status, message?, errors?}."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["code"] == status
    assert isinstance(body["status"], str)
    assert set(body) <= {"code", "status", "message", "errors"}
    if message_part is not None:
        assert message_part in body["message"]
    return body


def purge(app) -> list[int]:
    """Run `flask purge-deleted`; the ids of the stores it purged."""
    result = app.test_cli_runner().invoke(args=["purge-deleted"])
    assert result.exit_code == 0, result.output
    return [int(line.split()[-1].rstrip(".")) for line in result.output.splitlines()[:-1]]


def change_settings(monkeypatch, app, **changes) -> None:
    """Run the rest of the test with `app`'s settings changed (by field name)."""
    changed = app.extensions["settings"].model_copy(update=changes)
    monkeypatch.setitem(app.extensions, "settings", changed)


def times(sql, table: str, row_id: int) -> dict[str, str]:
    """The row's created_at and updated_at, read from the database, as the API shows them."""
    ((created_at, updated_at),) = sql(
        f"SELECT created_at, updated_at FROM {table} WHERE id = :id", id=row_id
    )
    return {"created_at": shown_time(created_at), "updated_at": shown_time(updated_at)}


def shown_time(value: datetime | str) -> str:
    """A time read by raw SQL (SQLite's: text, in UTC) as the API shows it."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime(TIMESTAMP_FORMAT)
