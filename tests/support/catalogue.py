"""Sending catalogue files, and running their imports as the worker does."""

import json

from flask import Flask
from flask.testing import FlaskClient

from catalogue.runs import run_import
from db import db

JSONL = "application/x-ndjson"
CSV = "text/csv"


def json_lines(*items: dict) -> bytes:
    return "".join(json.dumps(item) + "\n" for item in items).encode()


def send_file(client: FlaskClient, store_id: int, body: bytes, media_type: str = JSONL, **kw):
    return client.post(f"/store/{store_id}/item/import", data=body, content_type=media_type, **kw)


def imported(app: Flask, client: FlaskClient, store_id: int, body: bytes, media_type=JSONL):
    """Send the file, run its import as the worker would (on SQLite, the request did), and
    return its status."""
    response = send_file(client, store_id, body, media_type)
    assert response.status_code == 202, response.get_json()
    import_id = response.get_json()["id"]
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            assert run_import(import_id)
    status = client.get(response.headers["Location"])
    assert status.status_code == 200, status.get_json()
    return status.get_json()
