"""How soon webhooks arrive (issue 41.7): writes at a steady rate through the API, each an
event delivered by the job worker, as deployed, to a receiver on 127.0.0.1; the time from
each event to its arrival, and whether deliveries keep up.

`.venv/bin/python bench/webhooks.py [--rate 100] [--seconds 30]`: one throwaway PostgreSQL,
gunicorn (2 workers) and the worker (`python -m procrastinate --app=worker.queue worker`,
WEBHOOK_ALLOWED_NETWORKS letting loopback through), one webhook. Latency is counted from
the event's `occurred_at`, stamped just before its transaction commits: a little more than
from the commit. Prints deliveries a second, the median and 95th percentile latency, the
medians of the first and last thirds of the run (equal: keeping up; growing: falling behind),
and how long the last delivery came after the last write.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import JWT_SECRET, admin_token_maker
from tools.gunicorn_server import API, ROOT, gunicorn
from tools.throwaway_postgres import throwaway_postgres
from tools.webhook_receiver import webhook_receiver

LOOPBACK = "127.0.0.0/8,::1"


def write_steadily(url: str, headers: dict, store_id: int, rate: float, seconds: float) -> int:
    """POST /item `rate` times a second for `seconds`, from two threads; how many."""
    written = []
    deadline = time.monotonic() + seconds

    def writer(offset: float) -> None:
        session = requests.Session()
        session.headers.update(headers)
        due = time.monotonic() + offset
        while due < deadline:
            time.sleep(max(0.0, due - time.monotonic()))
            body = {"name": "Hooked", "price": 1, "store_id": store_id}
            assert session.post(f"{url}/item", json=body, timeout=30).status_code == 201
            written.append(1)
            due += 2 / rate

    threads = [threading.Thread(target=writer, args=(n / rate,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(written)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=100, help="writes (events) a second")
    parser.add_argument("--seconds", type=float, default=30, help="how long")
    arguments = parser.parse_args()
    with throwaway_postgres() as cluster:
        url = cluster.url("psycopg2")
        headers = admin_token_maker(url)()  # migrates
        env = {"DATABASE_URL": url, "JWT_SECRET_KEY": JWT_SECRET}
        worker_env = {**os.environ, **env, "WEBHOOK_ALLOWED_NETWORKS": LOOPBACK}
        with (
            gunicorn(API, env, "--workers", "2", stderr=subprocess.DEVNULL) as server,
            webhook_receiver() as (receiver, receiver_url),
        ):
            worker = subprocess.Popen(
                [sys.executable, "-m", "procrastinate", "--app=worker.queue", "worker"],
                cwd=ROOT, env=worker_env, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                hook = {"url": receiver_url.replace("127.0.0.1", "localhost")}
                made = requests.post(f"{server.url}/webhooks", json=hook, headers=headers)
                assert made.status_code == 201, made.text
                store = requests.post(f"{server.url}/store", json={"name": "Hooked"},
                                      headers=headers).json()  # fmt: skip
                receiver.wait_for(1, timeout=30)
                started = time.monotonic()
                written = write_steadily(
                    server.url, headers, store["id"], arguments.rate, arguments.seconds
                )
                wrote_for = time.monotonic() - started
                wrote_until = time.time()
                arrived = receiver.wait_for(1 + written, timeout=120)[1:]
            finally:
                worker.terminate()
                worker.wait(timeout=30)
    latencies = [
        each.at - datetime.fromisoformat(json.loads(each.body)["occurred_at"]).timestamp()
        for each in arrived
    ]
    third = len(latencies) // 3
    print(f"{written} writes in {wrote_for:.1f} s ({written / wrote_for:.0f}/s), "
          f"{len(arrived)} delivered")  # fmt: skip
    print(
        f"latency from the event: median {statistics.median(latencies) * 1000:.0f} ms, "
        f"95th percentile {statistics.quantiles(latencies, n=20)[-1] * 1000:.0f} ms; "
        f"first third's median {statistics.median(latencies[:third]) * 1000:.0f} ms, "
        f"last third's {statistics.median(latencies[-third:]) * 1000:.0f} ms; "
        f"the last arrived {(arrived[-1].at - wrote_until) * 1000:.0f} ms after the last write"
    )


if __name__ == "__main__":
    main()
