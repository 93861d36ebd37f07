"""nginx in front of gunicorn, as docker-compose.yml runs them, with the same nginx.conf:
slow clients hold no worker, nginx's own errors are JSON, the API sees the real client."""

import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests
from dnslib import QTYPE, RR, A
from dnslib.server import BaseResolver, DNSServer
from support.api import new_store
from support.http import client_at, server_env, sign_up

from tools.gunicorn_server import API, Server, gunicorn, listening_socket
from tools.throwaway_nginx import NGINX_CONF, throwaway_nginx
from tools.throwaway_postgres import free_port


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


def slow_client(url: str, headers: dict[str, str]) -> socket.socket:
    """Start a POST whose body will come one byte at a time. Signed in, so that the app waits
    for the body: refused at once (401), the worker would be free as soon as gunicorn stops
    draining the unread body, which it once did within 2 s, under load."""
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)))
    signed_in = "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode()
    connection.sendall(
        b"POST /store HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + signed_in
        + b"Content-Length: 100\r\n\r\n{"
    )
    return connection


def test_a_client_sending_its_body_byte_by_byte_holds_no_worker(one_worker, proxy, admin_headers):
    with slow_client(proxy, admin_headers) as trickle:
        for _ in range(5):
            trickle.sendall(b" ")
            # The only worker is free: nginx is the one waiting for the body.
            assert requests.get(f"{proxy}/health", timeout=3).status_code == 200
            time.sleep(0.5)

    # Without nginx, the same client holds the only sync worker: nobody else is served.
    with slow_client(one_worker.url, admin_headers) as trickle:
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
    assert [line["client"] for line in logged_requests(api_log, "/store/1")] == ["127.0.0.2"]


def test_etags_and_idempotency_keys_pass_nginx_unchanged(proxy, admin_headers):
    """No compression or buffering of nginx's weakens an ETag or drops a header: a strong
    ETag, 304, 412, and a replayed POST, through the proxy."""
    session = requests.Session()
    session.headers.update(admin_headers)
    keyed = {"Idempotency-Key": "through nginx"}
    created = session.post(f"{proxy}/store", json={"name": "Proxied"}, headers=keyed, timeout=10)
    replayed = session.post(f"{proxy}/store", json={"name": "Proxied"}, headers=keyed, timeout=10)
    url = f"{proxy}{created.headers['Location']}"
    read = session.get(url, timeout=10)

    assert (created.status_code, replayed.status_code) == (201, 201)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert read.headers["ETag"] == created.headers["ETag"]
    assert not read.headers["ETag"].startswith("W/")
    assert session.get(url, headers={"If-None-Match": read.headers["ETag"]}).status_code == 304
    renamed = session.put(url, json={"name": "New"}, headers={"If-Match": read.headers["ETag"]})
    stale = session.put(url, json={"name": "Newer"}, headers={"If-Match": read.headers["ETag"]})
    assert (renamed.status_code, stale.status_code) == (200, 412)


def test_the_metrics_stay_on_the_inside(one_worker, proxy):
    assert requests.get(f"{one_worker.url}/metrics", timeout=10).status_code == 200
    assert_json_error(requests.get(f"{proxy}/metrics", timeout=10), 404)


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


def logged_requests(log: Path, path: str) -> list[dict]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if '"path"' in line]
    return [line for line in lines if line["path"] == path]


# What a TLS load balancer in front of nginx adds, or what a client forges.
FORWARDED = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}


@pytest.mark.parametrize(
    ("trusted", "client_address", "scheme"),
    [
        (1, "127.0.0.2", "http"),  # nginx alone in front: the headers were forged
        (2, "203.0.113.9", "https"),  # a load balancer in front of nginx sent them
    ],
)
def test_links_through_nginx_keep_its_port_and_the_chain_of_proxies(
    database_url, client, api_log, trusted, client_address, scheme
):
    for name in ("A", "B", "C"):
        new_store(client, name)
    env = server_env(database_url, TRUSTED_PROXIES=str(trusted))
    with (
        api_log.open("w") as stderr,
        gunicorn(API, env, "--workers", "1", stderr=stderr) as api,
        throwaway_nginx(int(api.url.rsplit(":", 1)[1])) as proxy,
    ):
        session = client_at("127.0.0.2")
        first = session.get(f"{proxy}/store?page_size=2", headers=FORWARDED, timeout=10)
        next_url = first.links["next"]["url"]
        followed = session.get(next_url.replace("https://", "http://"), timeout=10)

    host = proxy.removeprefix("http://")  # nginx's own port, not the default one
    assert next_url == f"{scheme}://{host}/store?page_size=2&after=2"
    assert [store["name"] for store in followed.json()] == ["C"]
    (logged, *_) = logged_requests(api_log, "/store")
    assert logged["client"] == client_address


class Names(BaseResolver):
    """A DNS server's records, changed as the test goes: docker compose's DNS, which
    answers a service's name with the addresses of its instances."""

    def __init__(self) -> None:
        self.addresses: dict[str, list[str]] = {}

    def resolve(self, request, handler):
        reply = request.reply()
        for address in self.addresses.get(str(request.q.qname).rstrip("."), []):
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=1))
        return reply


@pytest.fixture
def dns() -> Iterator[tuple[Names, int]]:
    names = Names()
    server = DNSServer(names, port=0, address="127.0.0.1")
    server.start_thread()
    try:
        yield names, server.server.server_address[1]
    finally:
        server.stop()


def test_instances_scaled_or_restarted_later_are_reached_without_restarting_nginx(
    database_url, dns, tmp_path
):
    names, dns_port = dns
    port = free_port()
    env = server_env(database_url, TRUSTED_PROXIES="1")
    logs = {address: tmp_path / f"{address}.log" for address in ("127.0.0.2", "127.0.0.3")}
    for log in logs.values():
        log.touch()

    def start_instance(address: str, stack: ExitStack) -> None:
        log = stack.enter_context(logs[address].open("a"))
        server = gunicorn(API, env, "--workers", "1", stderr=log, address=(address, port))
        stack.enter_context(server)

    def served_by_each(requests_sent: int = 30) -> dict[str, int]:
        before = {address: len(logged_requests(log, "/store")) for address, log in logs.items()}
        for _ in range(requests_sent):
            assert requests.get(f"{proxy}/store", timeout=10).status_code == 200
        return {
            address: len(logged_requests(log, "/store")) - before[address]
            for address, log in logs.items()
        }

    def wait_for_nginx_to_forget() -> None:
        time.sleep(1.5)  # past the records' valid=1s: the next request resolves again

    with ExitStack() as instances:
        first = instances.enter_context(ExitStack())
        start_instance("127.0.0.2", first)
        names.addresses["api"] = ["127.0.0.2"]
        proxy = instances.enter_context(
            throwaway_nginx(
                port,
                **{
                    f"set $api http://127.0.0.1:{port};": f"set $api http://api:{port};",
                    "resolver 127.0.0.11 valid=5s ipv6=off;":
                        f"resolver 127.0.0.1:{dns_port} valid=1s ipv6=off;",
                },
            )
        )  # fmt: skip
        assert served_by_each() == {"127.0.0.2": 30, "127.0.0.3": 0}

        # docker compose up --scale api=2: a second instance, a second address.
        start_instance("127.0.0.3", instances)
        names.addresses["api"] = ["127.0.0.2", "127.0.0.3"]
        wait_for_nginx_to_forget()
        assert all(served_by_each().values())

        # The first instance goes away; only the second is left.
        first.close()
        names.addresses["api"] = ["127.0.0.3"]
        wait_for_nginx_to_forget()
        assert served_by_each() == {"127.0.0.2": 0, "127.0.0.3": 30}


def test_only_the_import_path_takes_bodies_up_to_import_max_bytes(proxy, admin_headers):
    session = requests.Session()
    session.headers.update(admin_headers)
    store = session.post(f"{proxy}/store", json={"name": "Imports"}, timeout=10).json()
    # 3 MiB: past every other path's limit (1 MiB).
    line = json.dumps({"name": "item", "price": 1, "description": "x" * 1000}) + "\n"
    body = line.encode() * (3 * 1024 * 1024 // len(line))
    jsonl = {"Content-Type": "application/x-ndjson"}
    url = f"{proxy}/store/{store['id']}/item/import"
    taken = session.post(url, data=body, headers=jsonl, timeout=30)
    assert taken.status_code == 202, taken.text
    assert_json_error(session.post(f"{proxy}/store", data=body, headers=jsonl, timeout=30), 413)

    # Past IMPORT_MAX_BYTES: refused by its Content-Length, before a byte of it is sent.
    host, port = proxy.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(
            f"POST /store/{store['id']}/item/import HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/x-ndjson\r\nContent-Length: {257 * 1024 * 1024}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        answer = b"".join(iter(lambda: connection.recv(65536), b""))
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(payload)["code"] == 413


def test_nginx_answers_only_the_allowed_hosts_and_never_sniffed(proxy, one_worker):
    refused = requests.get(f"{proxy}/store", headers={"Host": "evil.example"}, timeout=10)
    assert_json_error(refused, 421)
    # Behind it, the API refuses a host forged in X-Forwarded-Host by a proxy it trusts.
    forged = requests.get(
        f"{one_worker.url}/store", headers={"X-Forwarded-Host": "evil.example"}, timeout=10
    )
    assert_json_error(forged, 400)
    answers = [
        refused,
        requests.get(f"{proxy}/store", headers={"Host": "localhost"}, timeout=10),
        requests.get(f"{proxy}/swagger-ui", timeout=10),
        requests.get(f"{proxy}/metrics", timeout=10),
        requests.get(f"{proxy}/_auth/token", timeout=10),  # nginx's alone: not found outside
        requests.get(f"{proxy}/item?page=" + "9" * 9000, timeout=10),
    ]
    assert [answer.status_code for answer in answers] == [421, 200, 200, 404, 404, 414]
    for answer in answers:
        assert answer.raw.headers.getlist("X-Content-Type-Options") == ["nosniff"]
    assert answers[2].headers["X-Frame-Options"] == "SAMEORIGIN"
    assert_json_error(answers[4], 404)


def test_the_nginx_image_answers_the_hosts_of_allowed_hosts(tmp_path, one_worker):
    config = tmp_path / "nginx.conf"
    config.write_text(NGINX_CONF.read_text())
    entrypoint = NGINX_CONF.parent / "entrypoint.sh"
    env = {"PATH": os.environ["PATH"], "NGINX_CONF": str(config)}
    hosts = "api.example.com,.example.org"
    subprocess.run(["sh", entrypoint, "true"], env={**env, "ALLOWED_HOSTS": hosts}, check=True)
    refused = subprocess.run(
        ["sh", entrypoint, "true"], env={**env, "ALLOWED_HOSTS": "a.example;b"}, check=False
    )
    assert refused.returncode == 1

    with throwaway_nginx(int(one_worker.url.rsplit(":", 1)[1]), config_file=config) as proxy:

        def status(host: str) -> int:
            return requests.get(f"{proxy}/store", headers={"Host": host}, timeout=10).status_code

        # Past nginx, the API (ALLOWED_HOSTS unset: localhost) refuses them with its 400.
        assert status("api.example.com") == status("shop.example.org") == 400
        assert status("localhost") == status("example.com") == 421


def sent_upload(
    url: str, path: str, length: int, headers: dict[str, str], **source
) -> socket.socket:
    """A connection that sent an upload's headers, saying `length` bytes will follow, and the
    first MiB of them."""
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=5, **source)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    connection.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-ndjson\r\n"
        f"{head}Content-Length: {length}\r\n\r\n".encode()
    )
    line = b'{"name": "item", "price": 1}\n'
    connection.sendall(line * min(length // len(line), 1024 * 1024 // len(line)))
    return connection


def answer_on(connection: socket.socket) -> tuple[int, dict]:
    """The status and JSON body of the answer that came on `connection` (within its timeout)."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += connection.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += connection.recv(65536)
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic YTpi"])
def test_an_upload_without_a_valid_token_is_refused_before_its_body_is_read(
    proxy, client, authorization
):
    store = new_store(client)
    headers = {"Authorization": authorization} if authorization else {}
    path = f"/store/{store['id']}/item/import"
    # 60 MiB announced, 1 MiB sent: the 401 comes without waiting for the rest (client_body_timeout
    # is 10 s; this socket waits 5).
    with sent_upload(proxy, path, 60 * 1024 * 1024, headers) as connection:
        status, body = answer_on(connection)
    assert (status, body["code"]) == (401, 401)
    assert "Authorization: Bearer" in body["message"]


def test_an_upload_into_a_store_not_the_callers_is_refused_before_its_body_is_read(
    one_worker, proxy, client
):
    store = new_store(client)
    mallory = sign_up(one_worker.url, "mallory")
    for store_id in (store["id"], 2_000_000_000):
        path = f"/store/{store_id}/item/import"
        with sent_upload(proxy, path, 60 * 1024 * 1024, mallory) as connection:
            status, body = answer_on(connection)
        assert (status, body["code"]) == (403, 403)
        assert "owner or an admin" in body["message"]


def test_a_client_uploads_two_files_at_a_time_at_most(proxy, client, admin_headers):
    store = new_store(client)
    path = f"/store/{store['id']}/item/import"
    length = 10 * 1024 * 1024
    with ExitStack() as uploads:
        for _ in range(2):  # in progress: nginx is reading their bodies
            uploads.enter_context(sent_upload(proxy, path, length, admin_headers))
        time.sleep(0.5)  # past their token checks
        with sent_upload(proxy, path, length, admin_headers) as third:
            status, body = answer_on(third)
        assert (status, body["code"]) == (429, 429)

        # Another client's upload is taken meanwhile.
        other = client_at("127.0.0.2").post(
            f"{proxy}{path}",
            data=b'{"name": "item", "price": 1}\n',
            headers={**admin_headers, "Content-Type": "application/x-ndjson"},
            timeout=10,
        )
        assert other.status_code == 202, other.text


def test_an_upload_whose_token_cannot_be_checked_is_503_to_try_again():
    # Nothing listens on the API's port: nginx's token check gets no answer.
    with throwaway_nginx(free_port()) as proxy:
        upload = requests.post(
            f"{proxy}/store/1/item/import", data=b'{"name": "item", "price": 1}\n',
            headers={"Authorization": "Bearer a.b.c", "Content-Type": "application/x-ndjson"},
            timeout=10,
        )  # fmt: skip
    assert_json_error(upload, 503)
    assert upload.headers["Retry-After"] == "5"


def head_of(host: str) -> bytes:
    return f"Host: {host}\r\nConnection: close\r\n".encode()


# Requests neither gunicorn nor nginx can read as HTTP, or refuse by their limits.
MALFORMED = {
    "a control character in a header": b"GET /store HTTP/1.1\r\nX-Odd: a\x01b\r\n%s\r\n",
    "101 headers": b"GET /store HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"%s\r\n",
    "a header of 8,300 bytes": b"GET /store HTTP/1.1\r\nX-A: " + b"b" * 8295 + b"\r\n%s\r\n",
    "a chunk of no size": b"POST /login HTTP/1.1\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n%s\r\nzz\r\n",
    "a chunk without its end": b"POST /login HTTP/1.1\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n%s\r\n2\r\n{}XX0\r\n\r\n",
    "HTTP/2.0 on a request line": b"GET /store HTTP/2.0\r\n%s\r\n",
    "TRACE": b"TRACE /store HTTP/1.1\r\n%s\r\n",
}


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=MALFORMED.keys())
def test_what_no_server_can_read_is_answered_in_json_by_each(one_worker, proxy, request_bytes):
    for url in (one_worker.url, proxy):
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(request_bytes % head_of(host))
            answer = b"".join(iter(lambda: connection.recv(65536), b""))
        head, _, body = answer.partition(b"\r\n\r\n")
        status = int(head.split()[1])
        assert 400 <= status < 500 or status in (501, 505), (url, answer)
        assert b"\r\ncontent-type: application/json" in head.lower(), (url, answer)
        assert json.loads(body)["code"] == status, (url, answer)
