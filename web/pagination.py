"""Lists that cost what they return: keyset pages with a Link to the next (the first few
entries of each nested collection: rendering/firsts.py)."""

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from flask import request, url_for
from flask_smorest import abort
from sqlalchemy import Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from db import db
from schemas.field_types import MAX_PAGE_DEPTH, TIMESTAMP_FORMAT

LINK_HEADER = {
    "Link": {
        "description": 'The next page, while there is one: <URL>; rel="next" (RFC 8288)',
        "schema": {"type": "string"},
        "example": '<https://api.example.com/item?page_size=20&after=20>; rel="next"',
    }
}


# A page's entries, and where the next page starts (its `after`, or the arguments that say
# where; None: this is the last).
Page = tuple[list, int | dict[str, Any] | None]


def page_of(
    statement: Select,
    key: InstrumentedAttribute,
    page_size: int,
    descending: bool = False,
    parent: tuple[InstrumentedAttribute, int] | None = None,
    **position: int,
) -> Page:
    """One page of `statement` in `key` order (or its reverse): past `after` (a keyset)
    and at `page` (an offset from there, refused past MAX_PAGE_DEPTH); and the next page's
    `after` while there is one. `key` is the entries' id, or a column equal to it that an
    index orders better (a link table's).

    `parent` is a column and the one value the page's entries have in it (a store's items:
    store_id and the store's id); `statement` leaves it to this function. Past `after` the
    page is `(parent, key) > (value, after) AND parent <= value`, which the (parent, key)
    index serves from the page's first entry to its last: given `parent = value AND key >
    after`, the planner may walk the primary key from `after` and filter, reading every later
    row of other parents (20,016 rows for a page of 9 in tests/database/test_plans.py), and
    given the row comparison with `parent = value`, it walks the parent's whole index range.

    One row more than the page is read to know whether there is a next page: no count of
    every matching row, on any page.
    """
    order = [key.desc() if descending else key]
    after = position.get("after")
    if parent is not None:
        column, value = parent
        order.insert(0, column)
        if after is None:
            statement = statement.where(column == value)
        else:
            statement = statement.where(tuple_(column, key) > tuple_(value, after), column <= value)
    elif after is not None:
        statement = statement.where(key < after if descending else key > after)
    statement = statement.offset(page_offset(page_size, position.get("page")))
    rows = db.session.scalars(statement.order_by(*order).limit(page_size + 1)).all()
    return page_and_next(rows, page_size)


def changes_page(
    statement: Select,
    model: Any,
    updated_after: datetime,
    page_size: int,
    parent: tuple[InstrumentedAttribute, int] | None = None,
    **position: int,
) -> Page:
    """One page of `statement`'s rows changed after `updated_after`, in (updated_at, id)
    order, past `after` (an id whose updated_at is `updated_after`), and the next page's
    arguments: rows changed at the same time are neither skipped nor repeated. With
    `parent`, as page_of has it: a walk of the (parent, updated_at, id) index."""
    after = position.get("after")
    key = [model.updated_at, model.id]
    # In UTC: SQLite compares times as text.
    bound = [updated_after.astimezone(UTC), *([] if after is None else [after])]
    if parent is not None:
        column, value = parent
        key, bound = [column, *key], [value, *bound]
        statement = statement.where(column <= value)
    past = tuple_(*key[: len(bound)]) > tuple_(*bound)
    statement = statement.where(past).offset(page_offset(page_size, position.get("page")))
    rows = db.session.scalars(statement.order_by(*key).limit(page_size + 1)).all()
    entries, after = page_and_next(rows, page_size)
    if after is None:
        return entries, None
    last = entries[-1].updated_at.astimezone(UTC).strftime(TIMESTAMP_FORMAT)
    return entries, {"updated_after": last, "after": after}


def page_offset(page_size: int, page: int | None) -> int:
    """Where page `page` starts (0 with none), refused past MAX_PAGE_DEPTH."""
    if page is None:
        return 0
    if page * page_size > MAX_PAGE_DEPTH:
        abort(
            400,
            message=f"Pages go {MAX_PAGE_DEPTH:,} entries deep (page x page_size): past "
            "that, use after=<the last id you have>, as the Link header's next page does.",
        )
    return (page - 1) * page_size


def page_and_next(rows: Sequence[Any], page_size: int) -> Page:
    """A page of the (up to) page_size + 1 rows read for it, and the next page's `after`:
    one row more than the page tells whether there is a next page."""
    if len(rows) <= page_size:
        return list(rows), None
    return list(rows[:page_size]), rows[page_size - 1].id


def next_page_link(arguments: dict[str, Any], after: int | dict[str, Any]) -> dict[str, str]:
    """The Link header to the next page of this list: its path, the validated `arguments`
    of this request (never the raw query string: url_for would take `_anchor` or
    `endpoint` from it as its own), and `after` (or the arguments a Page gave instead)."""
    position = after if isinstance(after, dict) else {"after": after}
    left_out = ("page", "after", *position)
    kept = {name: value for name, value in arguments.items() if name not in left_out}
    url = url_for(request.endpoint, **(request.view_args or {}), **kept, **position, _external=True)
    return {"Link": f'<{url}>; rel="next"'}


def linked(view: Callable[..., Page], query_names: Iterable[str]) -> Callable:
    """A list view answering its page's entries with the Link header to the next page, whose
    query repeats this request's validated `query_names` arguments."""

    @wraps(view)
    def with_link(*args, **kwargs) -> tuple[list, dict[str, str]]:
        entries, after = view(*args, **kwargs)
        if after is None:
            return entries, {}
        query = {name: kwargs[name] for name in query_names if name in kwargs}
        return entries, next_page_link(query, after)

    return with_link
