"""Baselines: the smallest WSGI apps serving GET /store/<id>'s JSON, on a raw driver.

No framework, one connection per thread. Three of them:
- `three_queries`: the obvious queries (the store, its first items, its first tags) and
  the same JSON built in Python, on psycopg 3;
- `one_statement_psycopg2`: the API's own statement, `SELECT store_document(...)` (PostgreSQL
  renders the JSON), on psycopg2, the API's default driver: the floor, so that the API's
  figure against it is what its framework costs;
- `one_statement`: the same on psycopg 3, which prepares the statement on the server after 5
  runs (the API must not, behind PgBouncer): faster than any floor the API could reach;
- `flask_one_statement`: `one_statement_psycopg2`'s statement and connection in a bare Flask
  app of one route: what Flask itself costs, with nothing of the API's.
"""

import json
import os
import re
import threading
from collections.abc import Callable, Iterable
from decimal import Decimal

import psycopg
import psycopg2
from flask import Flask, Response

from schemas.field_types import NESTED_LIMIT

STORE_PATH = re.compile(r"/store/(\d+)")
NOT_FOUND = b'{"code": 404, "status": "Not Found"}'


def psycopg_connection() -> psycopg.Connection:
    return psycopg.connect(os.environ["BENCH_DSN"], autocommit=True)


def psycopg2_connection():
    connection = psycopg2.connect(os.environ["BENCH_DSN"])
    connection.autocommit = True
    return connection


def serving(
    render: Callable[[psycopg.Cursor, int], bytes | None], connect: Callable = psycopg_connection
) -> Callable:
    """A WSGI app answering GET /store/<id> with what `render` makes of the id (None: 404),
    on a connection per thread that `connect` makes."""
    connections = threading.local()

    def cursor():
        if not hasattr(connections, "connection"):
            connections.connection = connect()
        return connections.connection.cursor()

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


def by_one_statement(cur, store_id: int) -> bytes | None:
    cur.execute("SELECT store_document(%s)", (store_id,))
    (document,) = cur.fetchone()
    return document and document.encode()


three_queries = serving(by_three_queries)
one_statement = serving(by_one_statement)
one_statement_psycopg2 = serving(by_one_statement, psycopg2_connection)


def flask_app() -> Flask:
    app = Flask(__name__)
    cursor_of_thread = serving(by_one_statement, psycopg2_connection)

    @app.get("/store/<int:store_id>")
    def store(store_id: int) -> Response:
        # The raw app answers this path itself: its WSGI call is the statement and the body.
        environ = {"PATH_INFO": f"/store/{store_id}"}
        (body,) = cursor_of_thread(environ, lambda *_: None)
        return Response(body, mimetype="application/json")

    return app


flask_one_statement = flask_app()
