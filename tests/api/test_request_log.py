import json
import logging
import time

import pytest


@pytest.fixture
def request_lines(caplog):
    logger = logging.getLogger("stores.requests")
    logger.addHandler(caplog.handler)
    yield lambda: [json.loads(record.getMessage()) for record in caplog.records]
    logger.removeHandler(caplog.handler)


def test_each_request_logs_one_structured_line(client, request_lines):
    response = client.post("/store", json={"name": "Books"})
    (line,) = request_lines()
    assert line["method"] == "POST"
    assert line["path"] == "/store"
    assert line["status"] == 201
    assert line["duration_ms"] >= 0
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert len(line["request_id"]) == 32


def test_a_client_request_id_is_kept_and_echoed(client, request_lines):
    started = time.perf_counter()
    response = client.get("/store/9", headers={"X-Request-ID": "abc-123"})
    took_ms = (time.perf_counter() - started) * 1000
    assert response.headers["X-Request-ID"] == "abc-123"
    (line,) = request_lines()
    assert 0 < line.pop("duration_ms") <= took_ms
    assert line == {
        "method": "GET", "path": "/store/9", "client": "127.0.0.1", "status": 404,
        "request_id": "abc-123",
    }  # fmt: skip


def test_an_unsafe_request_id_is_replaced(client):
    response = client.get("/store", headers={"X-Request-ID": "evil\u2028line"})
    assert response.headers["X-Request-ID"] != "evil\u2028line"
    assert len(response.headers["X-Request-ID"]) == 32


def test_unknown_routes_get_an_id_too(client, request_lines):
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert request_lines()[0]["request_id"] == response.headers["X-Request-ID"]
