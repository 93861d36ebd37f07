"""Migrations keep the data, and the schema they make behaves alike on every database."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import flask_migrate
import pytest
from alembic.script import ScriptDirectory
from procrastinate.schema import SchemaManager
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError
from support.api import new_item, new_store, new_tag
from support.http import server_env

from app import create_app
from config.settings import Settings
from db import db

LINKED_STORE = [
    "INSERT INTO stores (id, name) VALUES (1, 'Books')",
    "INSERT INTO items (id, name, price, store_id) VALUES (1, 'Novel', 1, 1)",
    "INSERT INTO tags (id, name, store_id) VALUES (1, 'fiction', 1)",
    "INSERT INTO items_tags (item_id, tag_id) VALUES (1, 1)",
]
ROOT = Path(__file__).resolve().parents[2]
OUR_FUNCTIONS = "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
FUNCTION_DEFINITIONS = (
    "SELECT oid::regprocedure::text, pg_get_functiondef(oid) FROM pg_proc"
    " WHERE pronamespace = 'public'::regnamespace AND prokind = 'f' ORDER BY 1"
)
# Enums, and composite types that are no table's row.
OUR_TYPES = (
    "SELECT typname FROM pg_type LEFT JOIN pg_class ON pg_class.oid = typrelid"
    " WHERE typnamespace = 'public'::regnamespace AND (typtype = 'e' OR relkind = 'c')"
    " ORDER BY 1"
)
OUR_INDEXES = (
    "SELECT indexdef FROM pg_indexes"
    " WHERE schemaname = 'public' AND tablename != 'alembic_version' ORDER BY 1"
)
# Reflection skips SQLite's indexes of expressions (lower(username)).
SQLITE_INDEXES = "SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY 1"
# procrastinate's schema, as the database describes it.
JOB_QUEUE = [
    "SELECT oid::regprocedure::text, pg_get_functiondef(oid) FROM pg_proc"
    " WHERE proname LIKE 'procrastinate%' AND prokind = 'f' ORDER BY 1",
    "SELECT table_name, column_name, data_type, column_default, is_nullable"
    " FROM information_schema.columns WHERE table_name LIKE 'procrastinate%' ORDER BY 1, 2",
    "SELECT indexdef FROM pg_indexes WHERE tablename LIKE 'procrastinate%' ORDER BY 1",
    "SELECT pg_get_triggerdef(oid) FROM pg_trigger"
    " WHERE tgrelid::regclass::text LIKE 'procrastinate%' AND NOT tgisinternal ORDER BY 1",
    "SELECT typname, enumlabel FROM pg_enum JOIN pg_type ON pg_type.oid = enumtypid"
    " ORDER BY 1, enumsortorder",
]
COUNTS = (
    "SELECT (SELECT count(*) FROM stores), (SELECT count(*) FROM items),"
    " (SELECT count(*) FROM tags), (SELECT count(*) FROM items_tags)"
)


@pytest.mark.sqlite_too
def test_deleted_ids_are_never_handed_out_again(client):
    store = new_store(client, "Gone")
    item, tag = new_item(client, store["id"]), new_tag(client, store["id"])
    assert client.delete(f"/store/{store['id']}").status_code == 200

    again = new_store(client, "New")
    assert again["id"] > store["id"]
    assert new_item(client, again["id"])["id"] > item["id"]
    assert new_tag(client, again["id"])["id"] > tag["id"]


def test_migrating_a_filled_sqlite_database_keeps_every_row(tmp_path, request):
    """Migration 0003 copies SQLite tables to change their keys: no cascade may fire."""
    path = tmp_path / "old.db"
    app = create_app(Settings(database_url=f"sqlite:///{path}"), TESTING=True)
    migrations = str(request.config.rootpath / "migrations")
    with app.app_context():
        flask_migrate.upgrade(directory=migrations, revision="0002")
    with sqlite3.connect(path) as old:
        for statement in LINKED_STORE:
            old.execute(statement)

    with app.app_context():
        flask_migrate.upgrade(directory=migrations)

    with sqlite3.connect(path) as migrated:
        assert migrated.execute(COUNTS).fetchall() == [(1, 1, 1, 1)]
        for table in ("stores", "items", "tags"):
            (schema,) = migrated.execute(
                "SELECT sql FROM sqlite_master WHERE name = ?", (table,)
            ).fetchone()
            assert "AUTOINCREMENT" in schema, table
        migrated.execute("PRAGMA foreign_keys=ON")
        migrated.execute("DELETE FROM stores")
        assert migrated.execute(COUNTS).fetchall() == [(0, 0, 0, 0)]  # still cascading


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'new.db'}"
    return request.getfixturevalue("new_database").render_as_string(hide_password=False)


# SQLITE_INDEXES has those.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_every_migration_steps_up_and_down(empty_database_url, request):
    """One revision at a time up to head, down to base (each downgrade leaves the schema its
    upgrade found), and up again: a store written then is served."""
    app = create_app(Settings(database_url=empty_database_url), TESTING=True)
    migrations = str(request.config.rootpath / "migrations")
    revisions = [each.revision for each in ScriptDirectory(migrations).walk_revisions()][::-1]
    steps = list(zip(["base", *revisions[:-1]], revisions, strict=True))
    with app.app_context():
        found = {}
        for before, revision in steps:
            found[before] = schema()
            flask_migrate.upgrade(directory=migrations, revision=revision)
        migrated = schema()
        for before, revision in reversed(steps):
            flask_migrate.downgrade(directory=migrations, revision=before)
            assert schema() == found[before], f"{revision}'s downgrade"
        assert inspect(db.engine).get_table_names() == ["alembic_version"]
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect() as connection:
                assert connection.exec_driver_sql(OUR_FUNCTIONS).all() == []
        for revision in revisions:
            flask_migrate.upgrade(directory=migrations, revision=revision)
        assert schema() == migrated
        with db.engine.begin() as connection:
            for statement in LINKED_STORE:
                connection.exec_driver_sql(statement)

    store = app.test_client().get("/store/1").get_json()
    assert (store["name"], [item["name"] for item in store["items"]]) == ("Books", ["Novel"])


def schema() -> dict:
    """What migrations make, as the database describes it: each table's columns, keys and
    checks, the statement of each index; on PostgreSQL each function's definition and
    each type."""
    inspector = inspect(db.engine)
    described = {
        table: {
            describe.__name__: plain(describe(table))
            for describe in (
                inspector.get_columns,
                primary_key,
                inspector.get_foreign_keys,
                inspector.get_unique_constraints,
                inspector.get_check_constraints,
            )
        }
        for table in inspector.get_table_names()
        if table != "alembic_version"
    }
    with db.engine.connect() as connection:
        if db.engine.dialect.name == "postgresql":
            described["indexes"] = connection.exec_driver_sql(OUR_INDEXES).all()
            described["functions"] = connection.exec_driver_sql(FUNCTION_DEFINITIONS).all()
            described["types"] = connection.exec_driver_sql(OUR_TYPES).all()
        else:
            described["indexes"] = connection.exec_driver_sql(SQLITE_INDEXES).all()
    return described


def primary_key(table: str) -> list[str]:
    """Its columns: SQLite's batch copy (0003) drops a primary key's name, which means
    nothing there; PostgreSQL's is its index's."""
    return inspect(db.engine).get_pk_constraint(table)["constrained_columns"]


def plain(described):
    """Reflection's answer with its SQL expressions as text, lists in one order."""
    if isinstance(described, dict):
        return {key: plain(value) for key, value in described.items()}
    if isinstance(described, list):
        return sorted((plain(each) for each in described), key=repr)
    if described is None or isinstance(described, bool | int | str):
        return described
    return str(described)


def test_the_migrated_job_queue_is_the_installed_procrastinates(sql, new_database):
    """Migration 0008 holds procrastinate 3.10.0's schema, as text: upgrading procrastinate
    past a change of its schema needs a migration of ours, or this fails."""
    migrated = [sql(query) for query in JOB_QUEUE]
    with create_engine(new_database).begin() as scratch:
        # As migration 0008 runs it, through text().
        scratch.execute(text(SchemaManager.get_schema()))
        installed = [[tuple(row) for row in scratch.execute(text(query))] for query in JOB_QUEUE]
    assert all(migrated)
    assert migrated == installed


@pytest.mark.parametrize("starting_from", [None, "0003"])
def test_instances_starting_at_once_all_migrate(new_database, starting_from):
    """docker compose up --scale api=3: three `flask db upgrade` at once, each must succeed."""
    url = new_database.render_as_string(hide_password=False)
    if starting_from:
        upgrade(url, starting_from).check_returncode()

    upgrades = [subprocess.Popen(upgrade_command(), **upgrade_options(url)) for _ in range(3)]
    outcomes = [(process.wait(timeout=120), process.stderr.read()) for process in upgrades]

    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    with create_engine(new_database).connect() as migrated:
        version = migrated.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    assert version == [(ScriptDirectory(str(ROOT / "migrations")).get_current_head(),)]


def upgrade_command(revision: str = "head") -> list[str]:
    return [sys.executable, "-m", "flask", "db", "upgrade", revision]


def upgrade_options(url: str) -> dict:
    env = {**os.environ, **server_env(url), "FLASK_APP": "app:create_app"}
    return {"cwd": ROOT, "env": env, "stderr": subprocess.PIPE, "text": True}


def upgrade(url: str, revision: str) -> subprocess.CompletedProcess:
    return subprocess.run(upgrade_command(revision), **upgrade_options(url), timeout=120)


# Before 0015: names that differ only in case, or by a newline the old pattern let through,
# and names the renaming must step around.
CLASHING_USERS = [
    (1, "alice"),
    (2, "Alice"),
    (3, "ALICE"),
    (4, "alice-2"),
    (5, "bob\n"),
    (6, "carol\n"),
    (7, "Carol"),
    (8, "dave"),
]


def test_usernames_that_clash_in_any_case_are_renamed_then_unique(
    empty_database_url, request, capfd
):
    app = create_app(Settings(database_url=empty_database_url), TESTING=True)
    migrations = str(request.config.rootpath / "migrations")
    with app.app_context():
        flask_migrate.upgrade(directory=migrations, revision="0014")
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO users (id, username, email, password_hash, token_version) "
                    "VALUES (:id, :username, :email, 'x', 0)"
                ),
                [
                    {"id": id_, "username": name, "email": f"{id_}@example.com"}
                    for id_, name in CLASHING_USERS
                ],
            )

        capfd.readouterr()
        flask_migrate.upgrade(directory=migrations, revision="0015")
        # Reported on the migration's log (migrations/alembic.ini: stderr).
        reported = [line for line in capfd.readouterr().err.splitlines() if "renamed" in line]

        assert usernames() == [
            (1, "alice"),  # the oldest keeps the name
            (2, "Alice-2-1"),  # alice-2 is taken
            (3, "ALICE-3"),
            (4, "alice-2"),
            (5, "bob"),  # the newline dropped
            (6, "carol"),
            (7, "Carol-7"),
            (8, "dave"),
        ]
        assert [line.partition("] ")[2] for line in reported] == [
            "user 2, 'Alice', renamed 'Alice-2-1': it clashed with user 1, 'alice'",
            "user 3, 'ALICE', renamed 'ALICE-3': it clashed with user 1, 'alice'",
            "user 5, 'bob\\n', renamed 'bob': a newline ended it",
            "user 7, 'Carol', renamed 'Carol-7': it clashed with user 6, 'carol\\n'",
            "user 6, 'carol\\n', renamed 'carol': a newline ended it",
        ]
        # Every token from before is revoked: the per-token revocations are gone.
        with db.engine.connect() as connection:
            versions = connection.exec_driver_sql("SELECT DISTINCT token_version FROM users")
            assert versions.all() == [(1,)]
        with pytest.raises(IntegrityError), db.engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO users (username, email, password_hash) VALUES ('DAVE', 'd@x.org', 'x')"
            )

        flask_migrate.downgrade(directory=migrations, revision="0014")
        assert usernames()[:2] == [(1, "alice"), (2, "Alice-2-1")]  # the new names are kept
        assert {"revoked_tokens", "revoked_token_families"} <= set(
            inspect(db.engine).get_table_names()
        )
        flask_migrate.upgrade(directory=migrations)
        assert "token_families" in inspect(db.engine).get_table_names()


def usernames() -> list[tuple[int, str]]:
    with db.engine.connect() as connection:
        return connection.exec_driver_sql("SELECT id, username FROM users ORDER BY id").all()
