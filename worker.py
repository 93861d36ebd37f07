"""The job worker, beside app.py: procrastinate's, run in the project's directory as
`python -m procrastinate --app=worker.queue worker` (python -m puts that directory on
sys.path; procrastinate's console script does not).

Importing this module does nothing: when procrastinate asks it for `queue`, the settings
are read, the worker's metrics server starts, its jobs are registered (jobs/tasks.py) and
webhooks start being delivered (webhooks/delivering.py).
"""

from functools import cache, partial

import procrastinate
import prometheus_client

from app import create_app
from config.settings import load_settings
from connections.options import libpq_conninfo
from jobs.tasks import register_tasks
from webhooks.delivering import start_pump


@cache
def job_queue() -> procrastinate.App:
    """The worker's queue, made once, from the settings of the environment."""
    settings = load_settings()
    if settings.worker_metrics_port:
        # Its imports' counts and rates (observability/metrics.py), for Prometheus to scrape.
        prometheus_client.start_http_server(settings.worker_metrics_port)
    queue = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=libpq_conninfo(settings.database_url, settings.database_connect_timeout)
        )
    )
    # The Flask app the jobs run in, built by the first job that runs.
    flask_app = cache(partial(create_app, settings))
    register_tasks(
        queue,
        flask_app,
        purge_cron=settings.purge_cron,
        events_retention_days=settings.events_retention_days,
    )
    # Webhooks: the feed's events delivered as they commit, beside the jobs.
    start_pump(flask_app)
    return queue


def __getattr__(name: str) -> procrastinate.App:
    """`worker.queue`, made when procrastinate first asks for it (PEP 562), not on import."""
    if name == "queue":
        return job_queue()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
