"""The baseline: the smallest WSGI app serving GET /store/<id>'s JSON, on raw psycopg.

The three obvious queries (store, items, tags), the same JSON, one connection per thread,
no framework. (The API has PostgreSQL render that JSON in one statement: see the README.)
"""

import json
import os
import re
import threading
from decimal import Decimal

import psycopg

STORE_PATH = re.compile(r"/store/(\d+)")
connections = threading.local()


def cursor() -> psycopg.Cursor:
    if not hasattr(connections, "connection"):
        connections.connection = psycopg.connect(os.environ["BENCH_DSN"], autocommit=True)
    return connections.connection.cursor()


def app(environ, start_response):
    match = STORE_PATH.fullmatch(environ["PATH_INFO"])
    with cursor() as cur:
        store = (
            match
            and cur.execute(
                "SELECT id, name FROM stores WHERE id = %s", (int(match[1]),)
            ).fetchone()
        )
        if not store:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b'{"code": 404, "status": "Not Found"}']
        items = cur.execute(
            "SELECT id, name, price, description, store_id FROM items"
            " WHERE store_id = %s ORDER BY id",
            (store[0],),
        ).fetchall()
        tags = cur.execute(
            "SELECT id, name, store_id FROM tags WHERE store_id = %s ORDER BY id", (store[0],)
        ).fetchall()
    body = json.dumps(
        {
            "id": store[0],
            "items": [
                dict(zip(("id", "name", "price", "description", "store_id"), row, strict=True))
                for row in items
            ],
            "name": store[1],
            "tags": [dict(zip(("id", "name", "store_id"), row, strict=True)) for row in tags],
        },
        default=lambda value: float(value) if isinstance(value, Decimal) else str(value),
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
