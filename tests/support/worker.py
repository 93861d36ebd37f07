"""The job worker as deployed: procrastinate's, on worker.py, in a process of its own; and
an import sent to a real server, for it to run."""

import os
import subprocess
import sys
import time

import requests

from support import JWT_SECRET
from support.catalogue import JSONL, json_lines
from tools.gunicorn_server import ROOT


def worker(database_url: str, **variables: str) -> subprocess.Popen:
    """A worker on `database_url`, running periodic jobs every second; its stderr piped."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "JWT_SECRET_KEY": JWT_SECRET,
        "PURGE_CRON": "* * * * * *",  # every second
        **variables,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "procrastinate", "--app=worker.queue", "worker"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def import_runs(base_url: str, headers: dict, store_id: int) -> bool:
    """Send a small catalogue file; whether the worker imported it within 30 s."""
    sent = requests.post(
        f"{base_url}/store/{store_id}/item/import", data=json_lines({"name": "Lamp", "price": 2}),
        headers={**headers, "Content-Type": JSONL}, timeout=30,
    )  # fmt: skip
    assert sent.status_code == 202, sent.text
    status_url = base_url + sent.headers["Location"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if requests.get(status_url, headers=headers, timeout=30).json()["state"] == "succeeded":
            return True
        time.sleep(0.2)
    return False
