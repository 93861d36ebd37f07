"""Constraint conflicts are told apart by code on every driver: psycopg 3, psycopg2, SQLite."""

import pytest
from sqlalchemy.exc import IntegrityError

from web.transactions import violated_constraint

pytestmark = pytest.mark.sqlite_too

ARRANGE = [
    "INSERT INTO stores (id, name) VALUES (1, 'Books')",
    "INSERT INTO items (id, name, price, store_id) VALUES (1, 'Novel', 1, 1)",
    "INSERT INTO tags (id, name, store_id) VALUES (1, 'fiction', 1)",
    "INSERT INTO items_tags (item_id, tag_id) VALUES (1, 1)",
]


@pytest.mark.parametrize(
    ("statement", "kind"),
    [
        ("INSERT INTO stores (id, name) VALUES (2, 'Books')", "unique"),
        ("INSERT INTO tags (id, name, store_id) VALUES (2, 'fiction', 1)", "unique"),
        ("INSERT INTO items_tags (item_id, tag_id) VALUES (1, 1)", "unique"),  # primary key
        ("INSERT INTO items (id, name, price, store_id) VALUES (2, 'x', 1, 42)", "foreign key"),
        ("INSERT INTO items_tags (item_id, tag_id) VALUES (1, 42)", "foreign key"),
        ("INSERT INTO stores (id, name) VALUES (2, NULL)", None),
        (
            "INSERT INTO users (username, email, password_hash, role)"
            " VALUES ('a', 'a@example.com', 'x', 'root')",
            None,
        ),
    ],
    ids=["unique", "composite-unique", "primary-key", "foreign-key", "link-foreign-key",
         "not-null", "check"],
)  # fmt: skip
def test_a_violated_constraint_is_classified_by_code(engine, statement, kind):
    with engine.begin() as connection:
        for arrange in ARRANGE:
            connection.exec_driver_sql(arrange)
    with pytest.raises(IntegrityError) as raised, engine.begin() as connection:
        connection.exec_driver_sql(statement)
    assert violated_constraint(raised.value) == kind
