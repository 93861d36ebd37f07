"""The values an imported file gives fields unique among a store's items (Field.unique, the
sku): one on two lines of a batch, or an item's of the store already (an earlier batch's
too), is a bad line, named before the batch is written. Per batch, so that memory stays flat.
"""

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select

from catalogue.lines import IMPORTED, BadLine
from db import db
from models import ItemModel

# Values looked up per statement.
VALUES_PER_STATEMENT = 1_000


def clashes(store_id: int, batch: list[tuple[int, tuple]]) -> Iterator[BadLine]:
    """Bad lines of `batch`, (line, IMPORTED values) in line order, for unique values."""
    for index, field in enumerate(IMPORTED):
        if not field.unique:
            continue
        first_line: dict[Any, int] = {}
        for line, values in batch:
            value = values[index]
            if value is None:
                continue
            if value in first_line:
                yield BadLine(
                    line, {field.name: [f"{value!r} is on line {first_line[value]} too."]}
                )
            else:
                first_line[value] = line
        column = getattr(ItemModel, field.name)
        given = list(first_line)
        for start in range(0, len(given), VALUES_PER_STATEMENT):
            taken = select(ItemModel.id, column).where(
                ItemModel.store_id == store_id,
                column.in_(given[start : start + VALUES_PER_STATEMENT]),
            )
            for item_id, value in db.session.execute(taken):
                message = f"Item {item_id} of the store has the {field.name} {value!r}."
                yield BadLine(first_line[value], {field.name: [message]})
