"""Baselines: the smallest WSGI apps serving GET /store/<id>'s JSON, on raw psycopg 3.

No framework, one connection per thread (psycopg prepares each statement on the server
after 5 runs, which the API must not do behind PgBouncer). Two of them:
- `three_queries`: the obvious queries (the store, its first items, its first tags) and
  the same JSON built in Python;
- `one_statement`: the API's own statement, `SELECT store_document(...)` (PostgreSQL renders
  the JSON), so that the API's figure against it is what its framework costs.
"""

import json
import os
import re
import threading
from collections.abc import Callable, Iterable
from decimal import Decimal

import psycopg

from web.fields import NESTED_LIMIT

STORE_PATH = re.compile(r"/store/(\d+)")
NOT_FOUND = b'{"code": 404, "status": "Not Found"}'
connections = threading.local()


def cursor() -> psycopg.Cursor:
    if not hasattr(connections, "connection"):
        connections.connection = psycopg.connect(os.environ["BENCH_DSN"], autocommit=True)
    return connections.connection.cursor()


def serving(render: Callable[[psycopg.Cursor, int], bytes | None]) -> Callable:
    """A WSGI app answering GET /store/<id> with what `render` makes of the id (None: 404)."""

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        match = STORE_PATH.fullmatch(environ["PATH_INFO"])
        with cursor() as cur:
            body = match and render(cur, int(match[1]))
        if not body:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [NOT_FOUND]
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return app


def firsts(rows: list[tuple], names: tuple[str, ...]) -> list[dict]:
    return [dict(zip(names, row, strict=True)) for row in rows[:NESTED_LIMIT]]


def by_three_queries(cur: psycopg.Cursor, store_id: int) -> bytes | None:
    store = cur.execute(
        "SELECT id, name, owner_id FROM stores WHERE id = %s", (store_id,)
    ).fetchone()
    if not store:
        return None
    items = cur.execute(
        "SELECT id, name, price, description, store_id FROM items"
        " WHERE store_id = %s ORDER BY id LIMIT %s",
        (store_id, NESTED_LIMIT + 1),
    ).fetchall()
    tags = cur.execute(
        "SELECT id, name, store_id FROM tags WHERE store_id = %s ORDER BY id LIMIT %s",
        (store_id, NESTED_LIMIT + 1),
    ).fetchall()
    document = {
        "id": store[0],
        "name": store[1],
        "owner_id": store[2],
        "items": firsts(items, ("id", "name", "price", "description", "store_id")),
        "items_has_more": len(items) > NESTED_LIMIT,
        "items_url": f"/store/{store_id}/item",
        "tags": firsts(tags, ("id", "name", "store_id")),
        "tags_has_more": len(tags) > NESTED_LIMIT,
        "tags_url": f"/store/{store_id}/tag",
    }
    return json.dumps(
        document, default=lambda value: float(value) if isinstance(value, Decimal) else str(value)
    ).encode()


def by_one_statement(cur: psycopg.Cursor, store_id: int) -> bytes | None:
    (document,) = cur.execute("SELECT store_document(%s)", (store_id,)).fetchone()
    return document and document.encode()


three_queries = serving(by_three_queries)
one_statement = serving(by_one_statement)
