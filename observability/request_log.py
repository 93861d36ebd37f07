"""One structured log line per request, tied together by an X-Request-ID."""

import json
import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

logger = logging.getLogger("stores.requests")
# A client's id is echoed into logs and headers: only a plain token may pass.
CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def init_request_log(app: Flask) -> None:
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    app.before_request(start_request)
    app.after_request(log_request)


def start_request() -> None:
    g.started = time.perf_counter()
    client_id = request.headers.get("X-Request-ID", "")
    g.request_id = client_id if CLIENT_REQUEST_ID.fullmatch(client_id) else uuid.uuid4().hex


def request_seconds() -> float:
    """How long the current request has taken so far."""
    return time.perf_counter() - g.get("started", time.perf_counter())


def log_request(response: Response) -> Response:
    # start_request runs first of the before_request functions, but a request that fails
    # while Flask sets it up (before any of them) still gets an id and a duration of 0.
    request_id = g.get("request_id") or uuid.uuid4().hex
    response.headers["X-Request-ID"] = request_id
    duration_ms = request_seconds() * 1000
    logger.info(
        json.dumps(
            {
                "method": request.method,
                "path": request.path,
                "client": request.remote_addr,
                "status": response.status_code,
                "duration_ms": round(duration_ms, 2),
                "request_id": request_id,
            }
        )
    )
    return response
