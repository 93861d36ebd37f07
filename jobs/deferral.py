"""Deferring jobs from the API: the import of a catalogue file, once its request committed.

procrastinate's Task.defer runs synchronously on a connection pool of the app's own, by
the task's name (the worker's queue is worker.py's). A deferral that fails loses nothing:
the import stays queued, and the worker's periodic sweep runs it (jobs/tasks.py).
"""

import logging
from collections.abc import Callable

import procrastinate
from flask import Response, current_app

from config.settings import current_settings
from connections.options import libpq_conninfo

logger = logging.getLogger(__name__)

IMPORT_TASK = "jobs.tasks.import_catalogue"


def job_queue() -> procrastinate.App:
    """The app's procrastinate queue, opened once, on its first deferral."""
    if (queue := current_app.extensions.get("job_queue")) is None:
        settings = current_settings()
        connector = procrastinate.SyncPsycopgConnector(
            conninfo=libpq_conninfo(settings.database_url, settings.database_connect_timeout),
            # One connection, opened when needed; no prepared statements, which PgBouncer
            # 1.18 in transaction mode cannot keep.
            min_size=0, max_size=1, kwargs={"prepare_threshold": None},
        )  # fmt: skip
        queue = current_app.extensions["job_queue"] = procrastinate.App(connector=connector)
        queue.open()
    return queue


def start_import(import_id: int) -> Callable[[Response], Response]:
    """An after-request function that defers the import's job if the request succeeded."""

    def defer(response: Response) -> Response:
        if response.status_code < 300:
            try:
                job_queue().configure_task(IMPORT_TASK).defer(import_id=import_id)
            except procrastinate.exceptions.ProcrastinateException:
                logger.exception("Import %d stays queued for the sweep", import_id)
        return response

    return defer
