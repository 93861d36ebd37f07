"""A silent partition between the API and its read replica, acted out in a network namespace
of its own (as support.partition does for the primary): run as
`unshare -n python -m support.replica_partition`, it prints what a reader saw as JSON.

A primary, a standby streaming from it and gunicorn talk over this run's own loopback; a
reader GETs a store throughout; iptables drops every packet to and from the standby's port for
PARTITIONED_SECONDS, then lets them pass.
"""

import json
import subprocess
import time
from contextlib import ExitStack

import requests

from support.http import metric_total, server_env, sign_up
from support.partition import answer, partitioned
from support.replication import Replication
from tools.gunicorn_server import API, gunicorn

PARTITIONED_SECONDS = 12
AFTER_HEALING_SECONDS = 10


def reads_on_the_replica(base_url: str) -> float:
    exposed = requests.get(f"{base_url}/metrics", timeout=10).text
    return metric_total(exposed, "database_reads_total", database="replica1")


def read_for(base_url: str, path: str, seconds: float, answers: list) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        started = time.monotonic()
        response = requests.get(f"{base_url}{path}", timeout=60)
        answers.append(answer("read", started, response))


def act_out() -> dict:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with ExitStack() as stack:
        replication = Replication(stack)
        primary, replica = replication.urls("psycopg2")
        env = server_env(primary, DATABASE_REPLICA_URLS=replica)
        server = stack.enter_context(gunicorn(API, env, "--workers", "1"))
        headers = sign_up(server.url, "reader")
        store = requests.post(
            f"{server.url}/store", json={"name": "Read"}, headers=headers, timeout=30
        ).json()
        replication.wait_until_caught_up()  # the reader is anonymous: it reads the standby
        path, answers = f"/store/{store['id']}", []
        deadline = time.monotonic() + 30
        while not reads_on_the_replica(server.url) and time.monotonic() < deadline:
            read_for(server.url, path, 0.5, answers)
        served_before = reads_on_the_replica(server.url)
        with partitioned(replication.standby.port):
            partitioned_at = time.monotonic()
            read_for(server.url, path, PARTITIONED_SECONDS, answers)
        healed_at = time.monotonic()
        served_during = reads_on_the_replica(server.url)
        # Until the standby serves again (the test asserts it does), AFTER_HEALING_SECONDS at most.
        deadline = time.monotonic() + AFTER_HEALING_SECONDS
        while reads_on_the_replica(server.url) == served_during and time.monotonic() < deadline:
            read_for(server.url, path, 0.5, answers)
        served_after = reads_on_the_replica(server.url)
    return {
        "partitioned_at": partitioned_at, "healed_at": healed_at, "answers": answers,
        "served": [served_before, served_during, served_after],
    }  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(act_out()))
