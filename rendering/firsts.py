"""The first entries of a collection that a representation nests (a store's first items
and tags, an item's first tags, a tag's first items), with whether there are more: set on
the parents for the schemas to dump (schemas.field_types.first_entries)."""

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Select, any_, func, select

from db import db
from schemas.field_types import NESTED_LIMIT


def attach_firsts(
    parents: Sequence[Any], name: str, child: type, first_ids: Callable[[Any], Select]
) -> None:
    """Give each parent `first_<name>`, its first NESTED_LIMIT children by id, and
    `<name>_has_more`: in one statement, reading at most NESTED_LIMIT + 1 of each parent's
    children however many it has.

    `first_ids(parent_id)` selects the ids of the children of `parent_id` in id order.
    Given one parent, that is its id itself, so the planner knows how many children it
    has (an item linked to 20,000 tags is read in index order, 11 links, not all of them
    sorted); given several, it is the parent model's id column, correlated.
    """
    if not parents:
        return
    parent_model = type(parents[0])
    parent_id = parents[0].id if len(parents) == 1 else parent_model.id
    firsts = first_ids(parent_id).limit(NESTED_LIMIT + 1)
    if db.session.get_bind().dialect.name == "postgresql":
        # An index scan of each parent's first ids, then of the children by primary key.
        is_first = child.id == any_(func.array(firsts.scalar_subquery()))
    else:
        is_first = child.id.in_(firsts)
    rows = db.session.execute(
        select(parent_model.id, child)
        .join(child, is_first)
        .where(parent_model.id.in_([parent.id for parent in parents]))
        .order_by(parent_model.id, child.id)
    ).all()
    children = defaultdict(list)
    for parent_id, entry in rows:
        children[parent_id].append(entry)
    for parent in parents:
        set_firsts(parent, name, children[parent.id])


def set_firsts(parent: Any, name: str, children: list) -> None:
    """What attach_firsts gives a parent, from `children` already in hand."""
    setattr(parent, f"first_{name}", children[:NESTED_LIMIT])
    setattr(parent, f"{name}_has_more", len(children) > NESTED_LIMIT)
