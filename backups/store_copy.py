"""One store, its items, tags and links, copied from a restored copy of the database (a
server restored to a point in time) into the live one, in one transaction: all or nothing.

The rows stream by COPY from the copy into temporary tables of the live transaction, then go
in by one INSERT per table, written by the set. Ids stay the same where the live database has
not used them since (a purged store's rows: drawn from the same sequences, never reused);
the others get new ones from the sequences, and the mapping is given back. The store comes
back live (not deleted), under its name or another; an owner the live database no longer has
leaves it ownerless. Columns are those both databases have: a copy from before a migration
brings what it had, and the live defaults fill in the rest. An erased store (backups/erasures.py)
is refused.
"""

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from models.event import INSERT_EVENT

# The store's rows of each table, as the copy selects them; parents first.
ROWS_OF_STORE = {
    "items": "store_id = %(store_id)s",
    "tags": "store_id = %(store_id)s",
    "items_tags": "item_id IN (SELECT id FROM items WHERE store_id = %(store_id)s)",
}
# The ids a link refers to, and the table each is renumbered with.
LINKED = {"item_id": "items", "tag_id": "tags"}
# Brought back live: what said it was deleted, by whom and until when, goes.
CLEARED = ("deleted_at", "expire_time", "deleted_by")


class StoreNotInCopyError(LookupError):
    """The copy has no store with this id: it did not exist at the copy's point in time."""


class StoreErasedError(LookupError):
    """An erasure (POST /store/<id>/purge) names the copy's store: no restore brings it back."""


@dataclass
class CopiedStore:
    store_id: int
    name: str
    rows: dict[str, int] = field(default_factory=dict)
    # Per table, (id in the copy, id now) of each row whose id the live database had used.
    renumbered: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    owner_dropped: bool = False


def copy_store(
    source: psycopg.Connection,
    live: psycopg.Connection,
    store_id: int,
    name: str | None = None,
    progress: Callable[[int], None] = lambda _rows: None,
    logged: Collection[tuple[int, datetime]] = (),
    committing: Callable[[], None] = lambda: None,
) -> CopiedStore:
    """Copy store `store_id` from `source` into `live` (neither in a transaction), committed
    once all of it is in; `progress` is told of each batch of rows as they stream, and
    `committing` of the COMMIT about to be sent. A store that an erasure of the live
    database's or of `logged` (the erasure log's (store id, created_at)) names is refused,
    before anything is written."""
    tables = ("stores", *ROWS_OF_STORE)
    with source.transaction(), live.transaction():
        source.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        columns = {table: shared_columns(source, live, table) for table in tables}
        store = source.execute(
            sql.SQL("SELECT {} FROM stores WHERE id = %s").format(names(columns["stores"])),
            (store_id,),
        ).fetchone()
        if store is None:
            raise StoreNotInCopyError(store_id)
        values = dict(zip(columns["stores"], store, strict=True))
        if erased(live, values, logged):
            raise StoreErasedError(store_id)
        for table in ROWS_OF_STORE:
            live.execute(
                sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                    restored(table), sql.Identifier(table)
                )
            )
            stream(source, live, table, columns[table], store_id, progress)
        copied = CopiedStore(store_id, name or values["name"])
        insert_store(live, values, copied)
        for table in ROWS_OF_STORE:
            copied.rows[table] = insert_rows(live, table, columns[table], copied)
            if table != "items_tags":
                # The links' foreign key checks plan on the parents' statistics: those of a
                # table emptied by the purge make them scan it whole, once per link (6 s
                # for 100,000 links, quadratic). ANALYZE counts the rows just inserted.
                live.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
        for table in tables:
            keep_sequence_ahead(live, table)
        record_restored(live, values.get("owner_id"), copied)
        committing()
    return copied


def record_restored(live: psycopg.Connection, owner_id: int | None, copied: CopiedStore) -> None:
    """The store's return as one store.restored event, as POST /store/<id>/restore records
    it (models/event.py): the store as GET /store/<id> shows it and what came back with it,
    by no user (actor null), in the copy's transaction."""
    (document,) = live.execute("SELECT store_document(%s)::text", (copied.store_id,)).fetchone()
    counts = {
        "items": copied.rows["items"],
        "tags": copied.rows["tags"],
        "links": copied.rows["items_tags"],
        "exact": True,
    }
    live.execute(
        INSERT_EVENT["pyformat"],
        {
            "type": "store.restored",
            "resource_id": copied.store_id,
            "store_id": copied.store_id,
            "owner_id": owner_id,
            "actor_id": None,
            "occurred_at": datetime.now(UTC),
            "data": document,
            "counts": json.dumps(counts, separators=(",", ":")),
        },
    )


def erased(live: psycopg.Connection, store: dict, logged: Collection[tuple[int, datetime]]) -> bool:
    """Whether an erasure names the store: one of the live database's or one `logged`. A copy
    from before stores had a created_at (migration 0017): an erasure of any store of its id."""
    created_at = store.get("created_at")
    if any(store["id"] == erased_id and created_at in (None, at) for erased_id, at in logged):
        return True
    query = "SELECT 1 FROM erasures WHERE store_id = %(id)s"
    if created_at is not None:
        query += " AND store_created_at = %(created_at)s"
    return live.execute(query, {"id": store["id"], "created_at": created_at}).fetchone() is not None


def shared_columns(source: psycopg.Connection, live: psycopg.Connection, table: str) -> list[str]:
    """The columns of `table` both databases have, in the live table's order."""
    query = (
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position"
    )
    had = {name for (name,) in source.execute(query, (table,))}
    return [name for (name,) in live.execute(query, (table,)) if name in had]


def stream(
    source: psycopg.Connection,
    live: psycopg.Connection,
    table: str,
    columns: list[str],
    store_id: int,
    progress: Callable[[int], None],
) -> None:
    """COPY the store's rows of `table` from the copy into its temporary table, as they come
    (COPY's text format: a row per line, newlines in values escaped)."""
    selected = sql.SQL("COPY (SELECT {} FROM {} WHERE {}) TO STDOUT").format(
        names(columns), sql.Identifier(table), sql.SQL(ROWS_OF_STORE[table])
    )
    into = sql.SQL("COPY {} ({}) FROM STDIN").format(restored(table), names(columns))
    with (
        source.cursor().copy(selected, {"store_id": store_id}) as reading,
        live.cursor().copy(into) as writing,
    ):
        for block in reading:
            writing.write(block)
            progress(bytes(block).count(b"\n"))


def insert_store(live: psycopg.Connection, values: dict, copied: CopiedStore) -> None:
    values.update({column: None for column in CLEARED if column in values}, name=copied.name)
    if live.execute("SELECT 1 FROM stores WHERE id = %s", (copied.store_id,)).fetchone():
        (copied.store_id,) = live.execute(
            "SELECT nextval(pg_get_serial_sequence('stores', 'id'))"
        ).fetchone()
    if values["id"] != copied.store_id:
        copied.renumbered["stores"] = [(values["id"], copied.store_id)]
    values["id"] = copied.store_id
    owner = values.get("owner_id")
    if (
        owner is not None
        and not live.execute("SELECT 1 FROM users WHERE id = %s", (owner,)).fetchone()
    ):
        values["owner_id"], copied.owner_dropped = None, True
    live.execute(
        sql.SQL("INSERT INTO stores ({}) VALUES ({})").format(
            names(list(values)), sql.SQL(", ").join(sql.Placeholder() * len(values))
        ),
        list(values.values()),
    )


def insert_rows(
    live: psycopg.Connection, table: str, columns: list[str], copied: CopiedStore
) -> int:
    """Insert the table's restored rows under the store's id now, each under its own id if
    free, else a new one (noted in `copied.renumbered`); links follow both. The row count."""
    chosen = {"store_id": sql.Literal(copied.store_id)}
    joins = []
    # Its own ids (items, tags), or those it links (items_tags), as renumbered.
    references = LINKED if table == "items_tags" else {"id": table}
    if table != "items_tags":
        live.execute(
            sql.SQL(
                "CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT id AS old_id,"
                " nextval(pg_get_serial_sequence({}, 'id')) AS new_id"
                " FROM {} JOIN {} USING (id)"
            ).format(renumbering(table), sql.Literal(table), restored(table), sql.Identifier(table))
        )
    for column, linked in references.items():
        alias = sql.Identifier(f"renumbered_{column}")
        joins.append(
            sql.SQL("LEFT JOIN {} {} ON {}.old_id = restored.{}").format(
                renumbering(linked), alias, alias, sql.Identifier(column)
            )
        )
        chosen[column] = sql.SQL("coalesce({}.new_id, restored.{})").format(
            alias, sql.Identifier(column)
        )
    selected = sql.SQL(", ").join(
        chosen.get(column, sql.SQL("restored.{}").format(sql.Identifier(column)))
        for column in columns
    )
    inserted = live.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} restored {}").format(
            sql.Identifier(table),
            names(columns),
            selected,
            restored(table),
            sql.SQL(" ").join(joins),
        )
    ).rowcount
    if table != "items_tags":
        copied.renumbered[table] = live.execute(
            sql.SQL("SELECT old_id, new_id FROM {} ORDER BY old_id").format(renumbering(table))
        ).fetchall()
    return inserted


def keep_sequence_ahead(live: psycopg.Connection, table: str) -> None:
    """Past the ids just inserted: a live database restored from further back than the copy
    would hand them out again."""
    if table == "items_tags":
        return
    live.execute(
        sql.SQL(
            "SELECT setval(sequence, greatest(coalesce(pg_sequence_last_value(sequence), 1),"
            " (SELECT coalesce(max(id), 1) FROM {})))"
            " FROM CAST(pg_get_serial_sequence({}, 'id') AS regclass) AS sequence"
        ).format(sql.Identifier(table), sql.Literal(table))
    )


def names(columns: list[str]) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, columns))


def restored(table: str) -> sql.Identifier:
    return sql.Identifier(f"restored_{table}")


def renumbering(table: str) -> sql.Identifier:
    return sql.Identifier(f"renumbered_{table}")
