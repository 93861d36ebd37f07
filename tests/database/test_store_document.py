"""The store document PostgreSQL renders is the one rendering/store_document.py builds."""

import pytest
from sqlalchemy import create_engine

from rendering.store_document import FUNCTION, function_sql

pytestmark = pytest.mark.postgres_path
DEFINITION = "SELECT pg_get_functiondef('store_document(integer)'::regprocedure)"


def test_the_migrated_function_is_the_one_the_module_builds(sql, new_database):
    (installed,) = sql(DEFINITION)[0]
    with create_engine(new_database).begin() as scratch:
        scratch.exec_driver_sql(f"CREATE FUNCTION {FUNCTION} {function_sql()}")
        built = scratch.exec_driver_sql(DEFINITION).scalar()
    assert installed == built


def test_the_function_is_built_from_the_nested_limit():
    assert "LIMIT 6)" in function_sql(nested_limit=5)
    assert "jsonb_array_length(items.firsts) > 5" in function_sql(nested_limit=5)
    assert "LIMIT 11)" in function_sql()
