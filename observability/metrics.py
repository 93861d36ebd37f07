"""Prometheus metrics of the API: requests by method, route template and status, their
latency, database connections in use, throttle refusals; served at /metrics.

Under gunicorn, every worker writes its samples to files in PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode, set up in gunicorn.conf.py) and /metrics adds
them up, so whichever worker answers speaks for the whole instance. Without that variable
(`flask run`, the tests' in-process apps, a gunicorn that did not read gunicorn.conf.py) the
one process counts in memory, and /metrics says so (metrics_process_only); under gunicorn,
each worker warns of it at start.
"""

import os
import re
import sys
from functools import cache, lru_cache
from pathlib import Path

from flask import Flask, Response, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import Engine, event

REQUESTS = Counter(
    "http_requests", "Requests answered, by method, route template and status",
    ["method", "route", "status"],
)  # fmt: skip
LATENCY = Histogram(
    "http_request_duration_seconds", "Time to answer a request, by method and route template",
    ["method", "route"],
    # Our requests take 1-100 ms: buckets that tell those apart, and a few past them.
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)  # fmt: skip
CONNECTIONS = Gauge(
    "db_connections_in_use", "Pooled database connections checked out, by engine",
    ["engine"], multiprocess_mode="livesum",
)  # fmt: skip
DATABASE_FAILURES = Counter(
    "database_failures", "Requests the database could not serve (503), by kind: unavailable, "
    "read_only (a standby or demoted primary), timeout", ["kind"],
)  # fmt: skip
RECONNECTIONS = Counter(
    "database_reconnections", "Pooled connections opened again in place of one lost (a "
    "server restarted, failed over or unreachable), by engine", ["engine"],
)  # fmt: skip
READS = Counter(
    "database_reads", "GETs whose reads a database served, with DATABASE_REPLICA_URLS set, by "
    "database: primary, or a replica's name (replica1, ...)", ["database"],
)  # fmt: skip
READ_FALLBACKS = Counter(
    "database_read_fallbacks", "GETs whose reads went to the primary though replicas are set, "
    "by reason: lag (none within the maximum lag, or replayed past where it last failed; for a "
    "reader known by token or cookie, its own standby), down (none up, or the chosen one failed "
    "the read), timeout (the chosen one did not answer within DATABASE_REPLICA_TIMEOUT_SECONDS), "
    "refused (none that answers is a standby of the primary), read_your_writes (the reader's "
    "standby has not replayed its writes, or what the primary answered it), conflict (a "
    "standby cancelled the read for recovery); a GET counts once", ["reason"],
)  # fmt: skip
REPLICA_LAG = Gauge(
    "database_replica_lag_seconds", "How far each replica is behind the primary, as its last "
    "check found (to within a second; one further behind than the primary's samples kept, 10 "
    "minutes, reads as their age); +Inf while it is down or refused", ["replica"],
    multiprocess_mode="livemax",
)  # fmt: skip
REPLICA_REFUSED = Gauge(
    "database_replica_refused", "1 while a replica that answers is refused, by reason: "
    "other_cluster (another system identifier), later_timeline (a timeline past the "
    "primary's), ahead (replayed past what the primary flushed)", ["replica", "reason"],
    multiprocess_mode="livemax",
)  # fmt: skip
THROTTLED = Counter(
    "throttle_refusals", "Attempts refused with 429 while a limit's wait runs, by limit",
    ["limit"],
)  # fmt: skip
IMPORTS = Counter(
    "catalogue_imports", "Catalogue imports ended, by state (succeeded, failed)", ["state"]
)
IMPORTED_LINES = Counter("catalogue_import_lines", "Lines read by catalogue imports that ended")
IMPORT_RATE = Gauge(
    "catalogue_import_lines_per_second", "Lines per second of the last import that ended",
    multiprocess_mode="mostrecent",
)  # fmt: skip

# Whether /metrics adds up the samples every process wrote to PROMETHEUS_MULTIPROC_DIR; read
# once, as prometheus_client does when imported (above) to choose its kind of values.
ADDED_UP = "PROMETHEUS_MULTIPROC_DIR" in os.environ
if not ADDED_UP:
    Gauge(
        "metrics_process_only", "1: these counts are the answering process's alone (no "
        "PROMETHEUS_MULTIPROC_DIR); under several gunicorn workers, each counts its own share",
    ).set(1)  # fmt: skip

# Flask's rule syntax to OpenAPI's: /store/<int:store_id> -> /store/{store_id}.
RULE_VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def route_of_request() -> str:
    """The route template, never the path: one label value per route, whatever the ids."""
    rule = request.url_rule
    return route_template(rule.rule) if rule is not None else "unmatched"


@cache  # one rewrite per route, not one per request
def route_template(rule: str) -> str:
    return RULE_VARIABLE.sub(r"{\1}", rule)


# The labelled series, looked up once per method, route and status (bounded: a client picks
# the method).
@lru_cache(maxsize=1024)
def series(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    return REQUESTS.labels(method, route, str(status)), LATENCY.labels(method, route)


def count_request(response: Response, seconds: float) -> Response:
    """Count the request, answered by `response` after `seconds`."""
    requests, latency = series(request.method, route_of_request(), response.status_code)
    requests.inc()
    latency.observe(seconds)
    return response


def count_import(state: str, lines: int = 0, seconds: float | None = None) -> None:
    """An import ended; `lines` read in `seconds` (None: given up without a run, so no rate
    of its own)."""
    IMPORTS.labels(state).inc()
    IMPORTED_LINES.inc(lines)
    if seconds is not None:
        IMPORT_RATE.set(lines / max(seconds, 1e-6))


def count_read(database: str) -> None:
    READS.labels(database).inc()


def count_read_fallback(reason: str) -> None:
    READ_FALLBACKS.labels(reason).inc()


def show_replica(replica) -> None:
    """A replica was checked: its lag (a replication.replicas.Replica's)."""
    REPLICA_LAG.labels(replica.name).set(replica.lag_seconds)


def count_database_failure(kind: str) -> None:
    DATABASE_FAILURES.labels(kind).inc()


def count_connections(engine: Engine, name: str) -> None:
    in_use, reconnections = CONNECTIONS.labels(name), RECONNECTIONS.labels(name)

    @event.listens_for(engine.pool, "connect")
    def connected(_dbapi_connection, record) -> None:
        # record_info outlives the connection: the pool's slot, reconnected once lost.
        if record.record_info.get("connected"):
            reconnections.inc()
        record.record_info["connected"] = True

    @event.listens_for(engine.pool, "checkout")
    def checked_out(*_args) -> None:
        in_use.inc()

    @event.listens_for(engine.pool, "checkin")
    def checked_in(*_args) -> None:
        in_use.dec()


class WorkersSamples:
    """Every worker's samples in PROMETHEUS_MULTIPROC_DIR, added up: MultiProcessCollector's
    reading, but past a file that is still empty. A worker makes its file, then sizes it; a
    scrape in between failed whole with a 500 (prometheus/client_python#1199), and for good
    if the worker died there. An empty file holds no sample yet."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def collect(self):
        written = [str(f) for f in self.directory.glob("*.db") if size_of(f) > 0]
        return multiprocess.MultiProcessCollector.merge(written, accumulate=True)


def size_of(path: Path) -> int:
    """0 for a file gone since it was listed: a dead worker's gauges, removed."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def metrics() -> Response:
    registry = REGISTRY
    if ADDED_UP:
        registry = CollectorRegistry()
        registry.register(WorkersSamples(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
    # The app's own figures after them: read when scraped, the same in every process.
    read_now = current_app.extensions["metrics_read_now"]
    return Response(
        generate_latest(registry) + generate_latest(read_now), content_type=CONTENT_TYPE_LATEST
    )


def init_metrics(
    app: Flask, engines: dict[str | None, Engine], read_now: CollectorRegistry
) -> None:
    """/metrics: the requests', connections' and jobs' counts, and `read_now`'s figures,
    read when scraped."""
    # Under gunicorn (its arbiter forked this worker), not merely importing it as the app does.
    if not ADDED_UP and "gunicorn.arbiter" in sys.modules:
        # Another worker may answer the next scrape with counts of its own: say it where the
        # operator starts the server, and in /metrics (metrics_process_only).
        app.logger.warning(
            "/metrics counts this gunicorn worker (pid %d) alone, not the others: "
            "PROMETHEUS_MULTIPROC_DIR is not set, as gunicorn.conf.py sets it. Start gunicorn "
            "in the project's directory, where it reads that file, or with --config "
            "gunicorn.conf.py.",
            os.getpid(),
        )
    for name, engine in engines.items():
        count_connections(engine, name or "writes")
    app.extensions["metrics_read_now"] = read_now
    # Not in the OpenAPI spec: it is for operators' Prometheus, and nginx keeps it from
    # the internet side.
    app.add_url_rule("/metrics", "metrics", metrics)
