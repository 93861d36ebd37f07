"""nginx in front of gunicorn, as docker-compose.yml runs them, with the same nginx.conf:
slow clients hold no worker, nginx's own errors are JSON, the API sees the real client."""

import json
import socket
import time
from collections.abc import Iterator

import pytest
import requests
from helpers import client_at, server_env

from tools.gunicorn_server import API, Server, gunicorn, listening_socket
from tools.throwaway_nginx import throwaway_nginx


@pytest.fixture
def api_log(tmp_path):
    return tmp_path / "api.log"


@pytest.fixture
def one_worker(database_url, api_log) -> Iterator[Server]:
    """gunicorn with a single sync worker, behind a proxy it trusts."""
    env = server_env(database_url, TRUSTED_PROXIES="1")
    with api_log.open("w") as log, gunicorn(API, env, "--workers", "1", stderr=log) as server:
        yield server


@pytest.fixture
def proxy(one_worker) -> Iterator[str]:
    with throwaway_nginx(int(one_worker.url.rsplit(":", 1)[1])) as url:
        yield url


def assert_json_error(response: requests.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == status
    assert set(body) == {"code", "status", "message"}


def slow_client(url: str) -> socket.socket:
    """Start a POST whose body will come one byte at a time."""
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)))
    connection.sendall(
        b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{"
    )
    return connection


def test_a_client_sending_its_body_byte_by_byte_holds_no_worker(one_worker, proxy):
    with slow_client(proxy) as trickle:
        for _ in range(5):
            trickle.sendall(b" ")
            # The only worker is free: nginx is the one waiting for the body.
            assert requests.get(f"{proxy}/health", timeout=3).status_code == 200
            time.sleep(0.5)

    # Without nginx, the same client holds the only sync worker: nobody else is served.
    with slow_client(one_worker.url) as trickle:
        trickle.sendall(b" ")
        with pytest.raises(requests.Timeout):
            requests.get(f"{one_worker.url}/health", timeout=2)


def test_overlong_urls_headers_and_bodies_are_refused_by_nginx_in_json(proxy):
    assert_json_error(requests.get(f"{proxy}/item?page=" + "9" * 9000, timeout=10), 414)
    assert_json_error(
        requests.post(
            f"{proxy}/store",
            data=json.dumps({"name": "x" * 2_000_000}),
            headers={"Content-Type": "application/json"},
            timeout=10,
        ),
        413,
    )
    assert_json_error(
        requests.get(f"{proxy}/store", headers={"X-Big": "x" * 9000}, timeout=10), 431
    )


def test_the_api_sees_the_real_client_address_not_a_forged_one(proxy, api_log):
    client = client_at("127.0.0.2")
    response = client.get(
        f"{proxy}/store/1", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=10
    )
    assert response.status_code == 404  # answered by the API, in its shape
    logged = [json.loads(line) for line in api_log.read_text().splitlines() if '"path"' in line]
    assert [line["client"] for line in logged if line["path"] == "/store/1"] == ["127.0.0.2"]


def test_an_unreachable_api_is_a_json_502(tmp_path):
    with listening_socket() as nobody_answers:
        port = nobody_answers.getsockname()[1]
    # The port is free again: nothing listens there.
    with throwaway_nginx(port) as url:
        response = requests.get(f"{url}/store", timeout=10)
    assert_json_error(response, 502)
    assert response.headers["Retry-After"] == "5"


def test_an_api_that_does_not_answer_in_time_is_a_json_504():
    with listening_socket() as silent:  # accepts connections, never answers
        port = silent.getsockname()[1]
        with throwaway_nginx(port, **{"proxy_read_timeout 130s;": "proxy_read_timeout 1s;"}) as url:
            response = requests.get(f"{url}/store", timeout=10)
    assert_json_error(response, 504)
