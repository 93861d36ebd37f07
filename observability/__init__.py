"""What operators see of the API: a JSON line per request (request_log) and Prometheus
metrics (metrics)."""

from flask import Flask, Response
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from observability.metrics import count_request, init_metrics
from observability.request_log import init_request_log, log_request, request_seconds


def init_observability(
    app: Flask, engines: dict[str | None, Engine], read_now: CollectorRegistry
) -> None:
    """The request log and /metrics, with `read_now`'s figures read when scraped."""
    init_request_log(app)
    init_metrics(app, engines, read_now)
    # One hook for both: Flask dispatches each hook of every request on its own.
    app.after_request(observed)


def observed(response: Response) -> Response:
    # One clock for both: the logged duration is the one the histogram counts.
    seconds = request_seconds()
    return count_request(log_request(response, seconds), seconds)
