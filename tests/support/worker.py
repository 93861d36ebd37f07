"""The job worker as deployed: procrastinate's, on jobs/tasks.py, in a process of its own."""

import os
import subprocess
import sys

from support import JWT_SECRET
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
        [sys.executable, "-m", "procrastinate", "--app=jobs.tasks.queue", "worker"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
