"""Logins beside writes on SQLite: with Argon2 run outside any transaction, two clients
logging in without pause leave the other workers' POST /item latency where it was.

`.venv/bin/python bench/login_contention.py` (needs `wrk`): gunicorn with 4 workers on a
SQLite file, POST /item's p99 alone, then while two clients log in back to back.
Goal: p99 with logins <= 2 x idle + 20 ms.
"""

import argparse
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import POST_ITEM_SCRIPT, admin_token_maker, serve
from tools.gunicorn_server import API

PASSWORD = "correct horse battery staple"


def p99_ms(base_url: str, script: str, seconds: int) -> float:
    """POST /item's 99th percentile from one connection, requests one after the other."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        report = subprocess.run(
            ["wrk", "-t1", "-c1", f"-d{seconds}s", "--latency", "-s", lua.name,
             f"{base_url}/item"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", report).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def logging_in(base_url: str, username: str, stop: threading.Event, counted: list) -> None:
    body = {"username": username, "password": PASSWORD}
    while not stop.is_set():
        response = requests.post(f"{base_url}/login", json=body, timeout=30)
        counted.append(response.status_code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=15, help="length of one wrk run")
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        database_url = f"sqlite:///{directory}/bench.db"
        admin_headers = admin_token_maker(database_url)  # migrates
        with serve(API, database_url, "--workers", "4") as (base_url, _master):
            headers = admin_headers()
            store = requests.post(f"{base_url}/store", json={"name": "Bench"}, headers=headers)
            script = POST_ITEM_SCRIPT.format(
                store_id=store.json()["id"], authorization=headers["Authorization"]
            )
            users = ["login-a", "login-b"]
            for username in users:
                account = {"username": username, "email": f"{username}@example.com"}
                requests.post(
                    f"{base_url}/register", json={**account, "password": PASSWORD}, timeout=30
                ).raise_for_status()

            idle = p99_ms(base_url, script, arguments.seconds)
            stop, logins = threading.Event(), []
            clients = [
                threading.Thread(target=logging_in, args=(base_url, user, stop, logins))
                for user in users
            ]
            for client in clients:
                client.start()
            busy = p99_ms(base_url, script, arguments.seconds)
            stop.set()
            for client in clients:
                client.join()

    bound = 2 * idle + 20
    print(
        f"POST /item p99, SQLite, 4 workers: alone {idle:.1f} ms; while 2 clients logged in "
        f"{len(logins)} times ({set(logins)}) {busy:.1f} ms; goal <= 2 x idle + 20 ms = "
        f"{bound:.1f} ms: {'met' if busy <= bound else 'NOT MET'}"
    )


if __name__ == "__main__":
    main()
