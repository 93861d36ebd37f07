"""Arrange and act over HTTP, against the real app under gunicorn."""

import threading
from concurrent.futures import ThreadPoolExecutor

import requests
import requests.adapters
from prometheus_client.parser import text_string_to_metric_families

from support import JWT_SECRET, PASSWORD, bearer_of


def server_env(database_url: str, **variables: str) -> dict[str, str]:
    """The environment of a gunicorn server of the suite, on that database."""
    return {"DATABASE_URL": database_url, "JWT_SECRET_KEY": JWT_SECRET, **variables}


def metric_total(exposed: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` in a /metrics page whose labels include `labels`."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposed)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def store_item_and_tag_over_http(http, base_url: str, store_name: str) -> tuple[dict, dict, dict]:
    """A store with one item and one tag, made through a real server with a requests session."""
    store = http.post(f"{base_url}/store", json={"name": store_name}).json()
    item = http.post(
        f"{base_url}/item", json={"name": "Lamp", "price": 20, "store_id": store["id"]}
    ).json()
    tag = http.post(f"{base_url}/store/{store['id']}/tag", json={"name": "light"}).json()
    return store, item, tag


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
