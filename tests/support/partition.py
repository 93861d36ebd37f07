"""A silent partition between the API and its database, acted out in a network namespace
of its own: run as `unshare -n python -m support.partition DRIVER VIA`, or `... lone DRIVER`
(by tests/servers/test_partition.py), it prints what the clients saw as JSON.

Inside the namespace, loopback is this run's alone: PostgreSQL (and PgBouncer), gunicorn with
2 sync workers and five clients talk over it, and iptables drops every packet to and from the
database's port (no RST, nothing answers), as a firewall or a dead network path would, then
lets them pass.
"""

import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager, nullcontext

import flask_migrate
import psycopg
import requests
from sqlalchemy import make_url

from app import create_app
from config.settings import Settings
from support.http import server_env, sign_up
from tools.gunicorn_server import API, ROOT, gunicorn
from tools.throwaway_postgres import throwaway_pgbouncer, throwaway_postgres

# As the report: longer than any request may take under it (8 s: none waits it out).
PARTITION_SECONDS = 10
STATEMENT_TIMEOUT_MS = 5000
AFTER_HEALING_SECONDS = 6
# More clients than gunicorn's 2 workers: requests queue for a worker, as under load.
WRITERS = 4
# The reader's pause between reads: its pooled connection idles past the 0.1 s after which a
# checkout pings it (connections.faults), while the writers' are in steady use.
READ_PAUSE_SECONDS = 0.2


def iptables(action: str, port: int) -> None:
    for direction in ("--dport", "--sport"):
        rule = ["OUTPUT", "-p", "tcp", direction, str(port), "-j", "DROP"]
        subprocess.run(["iptables", action, *rule], check=True)


@contextmanager
def partitioned(port: int):
    iptables("-A", port)
    try:
        yield
    finally:
        iptables("-D", port)


def answer(what: str, started: float, response: requests.Response, key: str = "") -> dict:
    """One request as its client saw it: when it began and ended, its status, and what a 503
    came with."""
    body = response.json()
    return {
        "what": what, "started": started, "ended": time.monotonic(),
        "status": response.status_code, "retry_after": response.headers.get("Retry-After"),
        "error_shape": sorted(body) if response.status_code >= 400 else None,
        "key": key, "id": body.get("id") if response.status_code == 201 else None,
    }  # fmt: skip


def clients(base_url: str, headers: dict, store_id: int, answers: list, stop: threading.Event):
    """WRITERS clients creating stores, each with an Idempotency-Key it sends again until the
    write is answered 2xx, and one reading a store every READ_PAUSE_SECONDS; each request
    recorded as answer() says. None waits for Retry-After: they keep the workers busy."""

    def write(writer: int) -> None:
        written = 0
        while not stop.is_set():
            key, status = str(uuid.uuid4()), None
            name = f"Store {writer}-{written}"
            while status not in (200, 201) and not stop.is_set():
                started = time.monotonic()
                response = requests.post(
                    f"{base_url}/store", json={"name": name},
                    headers={**headers, "Idempotency-Key": key}, timeout=60,
                )  # fmt: skip
                answers.append(answer("write", started, response, key))
                status = response.status_code
            written += 1

    def read() -> None:
        while not stop.is_set():
            started = time.monotonic()
            response = requests.get(f"{base_url}/store/{store_id}", timeout=60)
            answers.append(answer("read", started, response))
            time.sleep(READ_PAUSE_SECONDS)

    writers = [threading.Thread(target=write, args=(number,)) for number in range(WRITERS)]
    return [*writers, threading.Thread(target=read)]


def act_out(driver: str, via: str) -> dict:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with throwaway_postgres() as cluster, tempfile.TemporaryFile("w+") as log:
        direct = cluster.url(driver)
        with create_app(Settings(database_url=direct), TESTING=True).app_context():
            flask_migrate.upgrade(directory=str(ROOT / "migrations"))
        bouncer = throwaway_pgbouncer(make_url(direct)) if via == "pgbouncer" else nullcontext()
        with bouncer as bouncer_port:
            url = direct if bouncer_port is None else direct.replace(
                f":{cluster.port}/", f":{bouncer_port}/"
            )  # fmt: skip
            env = server_env(url, DATABASE_STATEMENT_TIMEOUT_MS=str(STATEMENT_TIMEOUT_MS))
            with gunicorn(API, env, "--workers", "2", stderr=log) as server:
                headers = sign_up(server.url, "partitioned")
                store = requests.post(
                    f"{server.url}/store", json={"name": "Read"}, headers=headers, timeout=30
                ).json()
                answers: list = []
                stop = threading.Event()
                threads = clients(server.url, headers, store["id"], answers, stop)
                for thread in threads:
                    thread.start()
                time.sleep(1)
                with partitioned(cluster.port):
                    partitioned_at = time.monotonic()
                    time.sleep(PARTITION_SECONDS)
                healed_at = time.monotonic()
                time.sleep(AFTER_HEALING_SECONDS)
                stop.set()
                for thread in threads:
                    thread.join()
        with psycopg.connect(cluster.url("psycopg").replace("+psycopg", "")) as connection:
            names = connection.execute("SELECT name, count(*) FROM stores GROUP BY name").fetchall()
            stored = [id for (id,) in connection.execute("SELECT id FROM stores")]
        log.seek(0)
        server_log = log.read()
    return {
        "partitioned_at": partitioned_at, "healed_at": healed_at, "answers": answers,
        "acknowledged": [each["id"] for each in answers if each["id"] is not None],
        "stored": stored, "stores_by_name": dict(names), "server_log": server_log,
    }  # fmt: skip


def a_lone_client(driver: str) -> dict:
    """One client, in process, on an idle pooled connection: how long a read took, and what
    it got, when the partition had just begun (its connection is pinged first), the read
    after it, and the first read to succeed once the network healed (reads every 0.1 s)."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with throwaway_postgres() as cluster:
        app = create_app(Settings(database_url=cluster.url(driver)), TESTING=True)
        with app.app_context():
            flask_migrate.upgrade(directory=str(ROOT / "migrations"))
        client = app.test_client()

        def read() -> dict:
            started = time.monotonic()
            status = client.get("/store/1").status_code  # 404 from the database: none yet
            return {"seconds": time.monotonic() - started, "status": status}

        read()
        time.sleep(0.2)  # past the 0.1 s of idleness after which a checkout pings
        with partitioned(cluster.port):
            first, second = read(), read()
        healed_at = time.monotonic()
        while read()["status"] != 404 and time.monotonic() - healed_at < 10:
            time.sleep(0.1)
        return {"first": first, "second": second, "healed_after": time.monotonic() - healed_at}


if __name__ == "__main__":
    if sys.argv[1] == "lone":
        print(json.dumps(a_lone_client(sys.argv[2])))
    else:
        print(json.dumps(act_out(*sys.argv[1:])))
