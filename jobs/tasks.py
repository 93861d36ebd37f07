"""Background jobs, run by procrastinate's worker, in the project's directory:
`python -m procrastinate --app=jobs.tasks.queue worker`.

procrastinate keeps its jobs in our PostgreSQL (its schema is migration 0008): no broker to
run, periodic jobs deferred once whichever number of workers runs them, jobs fetched with
SKIP LOCKED. Its worker listens for new jobs (LISTEN/NOTIFY), which needs a session of its
own: it connects straight to PostgreSQL, never through PgBouncer in transaction mode.
"""

from functools import cache

import procrastinate
import prometheus_client
from flask import Flask

from app import create_app
from catalogue.runs import run_abandoned_imports, run_import
from config.settings import load_settings
from connections.options import libpq_conninfo
from jobs.purge import purge_expired

settings = load_settings()
if settings.worker_metrics_port:
    # Its imports' counts and rates (observability/metrics.py), for Prometheus to scrape.
    prometheus_client.start_http_server(settings.worker_metrics_port)


queue = procrastinate.App(
    connector=procrastinate.PsycopgConnector(
        conninfo=libpq_conninfo(settings.database_url, settings.database_connect_timeout)
    )
)


@cache
def flask_app() -> Flask:
    return create_app(settings)


# How often expired stores are looked for: PURGE_CRON.
@queue.periodic(cron=settings.purge_cron, periodic_id="purge-expired-stores")
# One run waiting at a time: a slow purge does not pile up runs behind it. Two workers may
# still purge at once; each batch locks its store, so they share the work.
@queue.task(queueing_lock="purge-expired-stores")
def purge_expired_stores(timestamp: int) -> int:
    """Purge the deleted stores whose expire_time has passed; a purge cut off (a killed
    worker) is finished by the next run, which starts from what is left."""
    with flask_app().app_context():
        return purge_expired()


@queue.task(name="jobs.tasks.import_catalogue")
def import_catalogue(import_id: int) -> bool:
    """Run an import taken by POST /store/<id>/item/import (deferred by jobs/deferral.py);
    whether this job ran it (not another worker, nor finished already)."""
    with flask_app().app_context():
        return run_import(import_id)


# As often as purges: an import whose job was lost (a failed deferral, a killed worker)
# is run by the next sweep.
@queue.periodic(cron=settings.purge_cron, periodic_id="sweep-abandoned-imports")
@queue.task(queueing_lock="sweep-abandoned-imports")
def sweep_abandoned_imports(timestamp: int) -> int:
    with flask_app().app_context():
        return run_abandoned_imports()
