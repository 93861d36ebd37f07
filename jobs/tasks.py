"""Background jobs, run by procrastinate's worker (worker.py, beside app.py, registers them).

procrastinate keeps its jobs in our PostgreSQL (its schema is migration 0008): no broker to
run, periodic jobs deferred once whichever number of workers runs them, jobs fetched with
SKIP LOCKED. Its worker listens for new jobs (LISTEN/NOTIFY), which needs a session of its
own: it connects straight to PostgreSQL, never through PgBouncer in transaction mode.
"""

from collections.abc import Callable

import procrastinate
from flask import Flask

from catalogue.runs import run_abandoned_imports, run_import
from jobs.deferral import IMPORT_TASK
from jobs.events import prune_old_events
from jobs.purge import purge_expired


def register_tasks(
    queue: procrastinate.App,
    flask_app: Callable[[], Flask],
    *,
    purge_cron: str,
    events_retention_days: float,
) -> None:
    """The worker's jobs, on `queue`, each run in the context of `flask_app()`. Their names
    are those of jobs kept in the database: they stay whatever the code's layout."""

    # How often expired stores are looked for: PURGE_CRON.
    @queue.periodic(cron=purge_cron, periodic_id="purge-expired-stores")
    # One run waiting at a time: a slow purge does not pile up runs behind it. Two workers may
    # still purge at once; each batch locks its store, so they share the work.
    @queue.task(name="jobs.tasks.purge_expired_stores", queueing_lock="purge-expired-stores")
    def purge_expired_stores(timestamp: int) -> int:
        """Purge the deleted stores whose expire_time has passed; a purge cut off (a killed
        worker) is finished by the next run, which starts from what is left."""
        with flask_app().app_context():
            return purge_expired()

    @queue.task(name=IMPORT_TASK)
    def import_catalogue(import_id: int) -> bool:
        """Run an import taken by POST /store/<id>/item/import (deferred by jobs/deferral.py);
        whether this job ran it (not another worker, nor finished already)."""
        with flask_app().app_context():
            return run_import(import_id)

    # As often as purges: an import whose job was lost (a failed deferral, a killed worker)
    # is run by the next sweep.
    @queue.periodic(cron=purge_cron, periodic_id="sweep-abandoned-imports")
    @queue.task(name="jobs.tasks.sweep_abandoned_imports", queueing_lock="sweep-abandoned-imports")
    def sweep_abandoned_imports(timestamp: int) -> int:
        with flask_app().app_context():
            return run_abandoned_imports()

    # As often as purges: the feed keeps EVENTS_RETENTION_DAYS of events, a minute more at most.
    @queue.periodic(cron=purge_cron, periodic_id="prune-old-events")
    @queue.task(name="jobs.tasks.prune_old_events", queueing_lock="prune-old-events")
    def prune_old_events_job(timestamp: int) -> int:
        with flask_app().app_context():
            return prune_old_events(events_retention_days)
