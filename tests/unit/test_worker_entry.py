"""worker.py, the job worker's entry: importing it does nothing; procrastinate asking it for
`queue` reads the settings, starts the metrics server and registers the jobs."""

import os
import subprocess
import sys

from tools.gunicorn_server import ROOT
from tools.throwaway_postgres import free_port

# Run in a process of its own: what the import did, then what asking for the queue did.
PROBE = """
import socket, sys
import worker

def serving(port):
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0

port = int(sys.argv[1])
print("imported, metrics served:", serving(port), flush=True)
queue = worker.queue
print("asked, metrics served:", serving(port))
print("ours:", sorted(name for name in queue.tasks if name.startswith("jobs.")))
"""


def run_probe(**variables: str) -> subprocess.CompletedProcess:
    # A database nobody listens on: nothing here connects.
    env = {**os.environ, "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none", **variables}
    return subprocess.run(
        [sys.executable, "-c", PROBE, variables.get("WORKER_METRICS_PORT", "0")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_worker_starts_its_metrics_server_and_jobs_when_asked_for_its_queue_not_on_import():
    port = free_port()
    probe = run_probe(WORKER_METRICS_PORT=str(port))
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.splitlines() == [
        "imported, metrics served: False",
        "asked, metrics served: True",
        "ours: ['jobs.tasks.import_catalogue', 'jobs.tasks.prune_old_events',"
        " 'jobs.tasks.purge_expired_stores', 'jobs.tasks.sweep_abandoned_imports']",
    ]


def test_importing_the_worker_reads_no_settings():
    """A setting it cannot run with stops the worker when it starts, not whoever imports it."""
    probe = run_probe(IDEMPOTENCY_KEY_HOURS="0")
    assert probe.stdout.splitlines() == ["imported, metrics served: False"]
    assert probe.returncode == 1
    assert "SettingsError: Fix these environment variables: IDEMPOTENCY_KEY_HOURS" in probe.stderr
