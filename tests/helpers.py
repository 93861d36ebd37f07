"""Arrange through the API, as a client would."""

import threading
from concurrent.futures import ThreadPoolExecutor

import requests
import requests.adapters
from flask.testing import FlaskClient

PASSWORD = "correct horse battery staple"
# Shared by the test apps and the gunicorn servers, so tokens made in one work in the other.
JWT_SECRET = "a-test-secret-of-more-than-32-bytes-for-signing-jwts"


def server_env(database_url: str, **variables: str) -> dict[str, str]:
    """The environment of a gunicorn server of the suite, on that database."""
    return {"DATABASE_URL": database_url, "JWT_SECRET_KEY": JWT_SECRET, **variables}


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


def store_item_and_tag_over_http(http, base_url: str, store_name: str) -> tuple[dict, dict, dict]:
    """A store with one item and one tag, made through a real server with a requests session."""
    store = http.post(f"{base_url}/store", json={"name": store_name}).json()
    item = http.post(
        f"{base_url}/item", json={"name": "Lamp", "price": 20, "store_id": store["id"]}
    ).json()
    tag = http.post(f"{base_url}/store/{store['id']}/tag", json={"name": "light"}).json()
    return store, item, tag


def bearer_of(token: str) -> dict[str, str]:
    """The headers that carry a token."""
    return {"Authorization": f"Bearer {token}"}


def sign_up(base_url: str, username: str) -> dict[str, str]:
    """Register and log in through a real server: headers carrying the fresh access token."""
    account = {"username": username, "email": f"{username}@example.com", "password": PASSWORD}
    requests.post(f"{base_url}/register", json=account, timeout=30).raise_for_status()
    login = requests.post(
        f"{base_url}/login", json={"username": username, "password": PASSWORD}, timeout=30
    )
    login.raise_for_status()
    return bearer_of(login.json()["access_token"])


def run_together(clients: int, work) -> list:
    """Run `work(client_number)` in as many threads, started at the same moment."""
    start = threading.Barrier(clients)

    def client(number: int):
        start.wait()
        return work(number)

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(client, range(clients)))


class FromAddress(requests.adapters.HTTPAdapter):
    """Connect from another loopback address (127.0.0.2, ...), as another client would."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, source_address=(self.address, 0), **kwargs)


def client_at(address: str) -> requests.Session:
    """A requests session whose connections come from `address` (in 127.0.0.0/8)."""
    session = requests.Session()
    session.mount("http://", FromAddress(address))
    return session


def purge(app) -> list[int]:
    """Run `flask purge-deleted`; the ids of the stores it purged."""
    result = app.test_cli_runner().invoke(args=["purge-deleted"])
    assert result.exit_code == 0, result.output
    return [int(line.split()[-1].rstrip(".")) for line in result.output.splitlines()[:-1]]
