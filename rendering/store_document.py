"""A store as GET /store/<id> shows it, which every write of a store answers too and
If-Match is compared with: one module for its two renderers, and the one place that picks
between them.

On PostgreSQL the database renders it whole, in one statement: one round trip and no
Python objects instead of three queries, ORM rows and a marshmallow dump, worth the upkeep of
a second renderer (docs/benchmarks.md). The statement is a PL/pgSQL function, whose plans are
kept for the life of the server connection (psycopg2 never prepares, and psycopg 3 must not
behind PgBouncer), so the read is planned once per connection, not once per request. Its SQL
is built here from NESTED_LIMIT; a migration installs it with the text function_sql() gave
then, pasted in (Alembic's replaceable objects, migrations/replaceable_objects.py): a change
here needs a new migration, as tests hold the installed function equal to function_sql() and
the two renderers' documents equal. Elsewhere (SQLite) StoreSchema renders it.
"""

from flask import Response, current_app, jsonify
from sqlalchemy import Select, select, text
from sqlalchemy.orm import aliased

from db import db, read_outside_the_session
from models import ItemModel, StoreModel, TagModel
from models.fields import ITEM_FIELDS, STORE_FIELDS, TAG_FIELDS, Field
from models.queries import NotFoundError, get_live_one
from models.timestamped import AS_TEXT
from rendering.firsts import attach_firsts
from schemas import StoreSchema
from schemas.field_types import NESTED_LIMIT

FUNCTION = "store_document(requested_id integer)"
# How each collection's first rows are found, in the store's index order (migration 0013):
# the function keeps the generic plan PL/pgSQL makes after five calls, and for
# `store_id = requested_id ORDER BY id`, with statistics that know one big store alone (taken
# before a small store came, or a sample that missed its rows), that plan walks the primary
# key through every row of the big one for a small store whose rows come last (100-250 ms a
# GET at a million items). A range is no equality the planner can drop from ORDER BY: only
# the (store_id, id) index gives that order, whatever the estimate.
IN_STORE_ORDER = "store_id BETWEEN requested_id AND requested_id ORDER BY store_id, id"
# What keeps every plan the function makes to indexes (migration 0014): a plan made while
# the tables were small (a seq scan of their few rows then cheapest) is kept for the life of
# the connection, and then reads every row of a table grown since, an import's uncommitted
# rows too (0.35 ms a call, then 5.0 ms beside 200,000 of them). Each statement here has an
# index that finds what it reads.
INDEXES_ONLY = "\nSET enable_seqscan = off"


def shown(field: Field, column: str) -> str:
    """The field's `column` as the document shows it."""
    return AS_TEXT["postgresql"].format(column) if field.kind == "timestamp" else column


def columns(fields: tuple[Field, ...]) -> str:
    """What the document shows of each row of a nested collection, by name."""
    return ", ".join(
        f"{shown(field, field.name)} AS {field.name}" if field.kind == "timestamp" else field.name
        for field in fields
    )


def function_sql(nested_limit: int = NESTED_LIMIT) -> str:
    """The function's definition after its signature, for `CREATE FUNCTION <FUNCTION> ...`.

    Each collection reads nested_limit + 1 rows at most, found by the store id itself (the
    planner then walks ix_items_store_id_id: IN_STORE_ORDER), and `- nested_limit` drops the
    last, which only told whether there are more."""
    more = nested_limit + 1
    store = ",\n            ".join(
        f"'{field.name}', {shown(field, f'store.{field.name}')}" for field in STORE_FIELDS
    )
    return f"""RETURNS text
LANGUAGE plpgsql STABLE STRICT{INDEXES_ONLY} AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object(
            {store},
            'items', items.firsts - {nested_limit},
            'items_has_more', jsonb_array_length(items.firsts) > {nested_limit},
            'items_url', '/store/' || store.id || '/item',
            'tags', tags.firsts - {nested_limit},
            'tags_has_more', jsonb_array_length(tags.firsts) > {nested_limit},
            'tags_url', '/store/' || store.id || '/tag'
        )::text
        FROM stores store,
            (SELECT coalesce(jsonb_agg(item ORDER BY item.id), '[]') AS firsts FROM (
                SELECT {columns(ITEM_FIELDS)} FROM items
                WHERE {IN_STORE_ORDER} LIMIT {more}) item) items,
            (SELECT coalesce(jsonb_agg(tag ORDER BY tag.id), '[]') AS firsts FROM (
                SELECT {columns(TAG_FIELDS)} FROM tags
                WHERE {IN_STORE_ORDER} LIMIT {more}) tag) tags
        WHERE store.id = requested_id AND store.deleted_at IS NULL
    );
END
$$"""


STORE_DOCUMENT = text("SELECT store_document(:store_id)")
# The same, as the PostgreSQL drivers take it, for GET /store/<id> (db.read_outside_the_session).
STORE_DOCUMENT_SQL = "SELECT store_document(%(store_id)s)"


def renders_in_database() -> bool:
    return db.engine.dialect.name == "postgresql"


def first_items_of_store(store_id) -> Select:
    first = aliased(ItemModel)
    return select(first.id).where(first.store_id == store_id).order_by(first.id)


def first_tags_of_store(store_id) -> Select:
    first = aliased(TagModel)
    return select(first.id).where(first.store_id == store_id).order_by(first.id)


def with_firsts(stores: list[StoreModel]) -> list[StoreModel]:
    """The stores, each with its first items and tags, for StoreSchema."""
    attach_firsts(stores, "items", ItemModel, first_items_of_store)
    attach_firsts(stores, "tags", TagModel, first_tags_of_store)
    return stores


def rendered_by_database(document: str | None, store_id: int) -> Response:
    if document is None:
        raise NotFoundError(StoreModel, store_id)
    return current_app.response_class(document, mimetype="application/json")


def store_answer(store: StoreModel) -> Response:
    """The store as GET /store/<id> shows it, in the session's transaction (a write's answer
    shows the write)."""
    if renders_in_database():
        document = db.session.scalar(STORE_DOCUMENT, {"store_id": store.id})
        return rendered_by_database(document, store.id)
    return jsonify(StoreSchema().dump(with_firsts([store])[0]))


def store_answer_by_id(store_id: int) -> Response:
    """GET /store/<id>'s answer: on PostgreSQL, one statement whatever the outcome, on a
    connection of the engine of reads (db.read_outside_the_session), not through the ORM
    session."""
    if renders_in_database():
        document = read_outside_the_session(STORE_DOCUMENT_SQL, {"store_id": store_id})
        return rendered_by_database(document, store_id)
    return store_answer(get_live_one(StoreModel, store_id))
