# Gunicorn settings, read by any gunicorn started in this directory (deploy/start.sh's too),
# picked with bench/run.py on the 2-core machines this project runs on
# (GET /store/<id> under wrk, PostgreSQL on the same machine; requests per second):
#   sync, 2 workers: 818    sync, 4 workers: 695
#   gthread, 2 workers x 4 threads: 612    gthread, 3 workers x 2 threads: 691
# and again once PostgreSQL rendered the store in one statement:
#   sync, 2 workers: 1,847    sync, 3 workers: 1,469
# Requests are CPU-bound Python plus short queries, so threads only add GIL contention
# and extra workers only add context switches: one sync worker per core wins.
# A sync worker serves one request at a time, so it holds at most one pooled connection:
# SQLAlchemy's default pool (opened lazily) needs no sizing. Its connections are pinged only
# after 0.1 s idle (connections.faults.ping_idle_connections): pinging before every use
# (pool_pre_ping) measured 1,650 req/s against 1,878.
import os
import shutil
import tempfile
from pathlib import Path

bind = "0.0.0.0:8000"
# The sync worker, with gunicorn's own error answers in the API's JSON error shape.
worker_class = "web.gunicorn_worker.JsonErrorsWorker"
# One per CPU this process may run on: in a container limited to some CPUs (cpuset), that
# many, not the host's count.
workers = int(os.environ.get("WEB_CONCURRENCY") or len(os.sched_getaffinity(0)))
# Long enough for a cascading delete of a very large store.
timeout = 120
# Limits of its own, behind nginx's (deploy/nginx/nginx.conf), which refuses longer request
# lines and headers first; either answers in JSON. A request line of up to 8190 bytes
# (gunicorn's largest) leaves the app's own 414 (MAX_URL_LENGTH) reachable when gunicorn
# faces clients itself.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190


# prometheus_client's multiprocess mode (observability/metrics.py): each worker writes its
# samples to files in this directory, and /metrics adds them up. Set before anything imports
# prometheus_client (it picks its kind of values at import); a directory of this server's own
# unless the environment names one.
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_metrics_directory = tempfile.mkdtemp(
        prefix="stores-metrics-"
    )
else:
    own_metrics_directory = None


def on_starting(_server) -> None:
    # Made if the environment names one not there yet: every worker would fail to start.
    samples = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    samples.mkdir(parents=True, exist_ok=True)
    # Samples of an earlier run of the server are not this one's.
    for stale in samples.glob("*.db"):
        stale.unlink()


def on_exit(_server) -> None:
    if own_metrics_directory:
        shutil.rmtree(own_metrics_directory, ignore_errors=True)


def child_exit(_server, worker) -> None:
    # Imported here, where the variable is surely set.
    from prometheus_client import multiprocess

    # A dead worker's gauges (connections in use) no longer count; its counters still do.
    multiprocess.mark_process_dead(worker.pid)
