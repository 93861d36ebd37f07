import sqlite3

from flask import request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Engine, MetaData, event
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    # Named constraints let Alembic's SQLite batch mode find and recreate them.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


# Responses are built from objects after commit: expiring them would cost a query
# per object and trip the lazy="raise" guards on eager-loaded collections.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})


@event.listens_for(Engine, "connect")
def enforce_sqlite_foreign_keys(dbapi_connection, _connection_record) -> None:
    # SQLite ignores foreign keys, and so ON DELETE CASCADE, unless asked per connection.
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def autocommit_reads() -> None:
    """Let GET and HEAD run without BEGIN and ROLLBACK: two round trips fewer per read.

    Nothing is lost: under READ COMMITTED each statement takes its own snapshot
    anyway, so a read-only transaction would make the reads no more consistent.
    """
    if request.method in ("GET", "HEAD"):
        db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
