"""`flask seed`: demo stores, items and tags, inserted in batches."""

from collections.abc import Callable

import click
from flask.cli import with_appcontext
from sqlalchemy import func, insert, select

from db import db
from models import ItemModel, ItemTagModel, StoreModel, TagModel
from models.event import record_event
from rendering.store_document import store_answer

BATCH_SIZE = 5_000


@click.command("seed")
@click.option("--stores", default=5, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--items-per-store", default=20, show_default=True, type=click.IntRange(0))
@click.option("--tags-per-store", default=5, show_default=True, type=click.IntRange(0, 10_000))
@click.option("--only-if-empty", is_flag=True, help="Do nothing when any store exists.")
@with_appcontext
def seed_command(stores: int, items_per_store: int, tags_per_store: int, only_if_empty: bool):
    """Fill the database with demo data; stores that exist already are left as they are."""
    if only_if_empty and db.session.scalar(select(func.count()).select_from(StoreModel)):
        click.echo("The database has stores already: not seeding.")
        return
    names = [f"Demo store {number}" for number in range(1, stores + 1)]
    existing = set(db.session.scalars(select(StoreModel.name).where(StoreModel.name.in_(names))))
    missing = [name for name in names if name not in existing]
    with click.progressbar(
        length=len(missing) * (items_per_store + 1),
        label="Seeding",
    ) as progress:
        for name in missing:
            seed_store(name, items_per_store, tags_per_store, progress.update)
    click.echo(f"Created {len(missing)} stores; {len(existing)} existed already.")


def seed_store(name: str, items: int, tags: int, advance: Callable[[int], None]) -> None:
    """One store in one transaction; each item linked to one of its tags, in turn."""
    store_id = db.session.scalar(insert(StoreModel).values(name=name).returning(StoreModel.id))
    tag_ids = []
    if tags:
        tag_ids = db.session.scalars(
            insert(TagModel).returning(TagModel.id, sort_by_parameter_order=True),
            [{"name": f"Tag {number}", "store_id": store_id} for number in range(1, tags + 1)],
        ).all()
    advance(1)
    for first in range(1, items + 1, BATCH_SIZE):
        numbers = range(first, min(first + BATCH_SIZE, items + 1))
        item_ids = db.session.scalars(
            insert(ItemModel).returning(ItemModel.id, sort_by_parameter_order=True),
            [{"name": f"Item {n}", "price": n % 100 + 0.99, "store_id": store_id} for n in numbers],
        ).all()
        if tag_ids:
            db.session.execute(
                insert(ItemTagModel),
                [
                    {"item_id": item_id, "tag_id": tag_ids[n % len(tag_ids)]}
                    for n, item_id in zip(numbers, item_ids, strict=True)
                ],
            )
        advance(len(numbers))
    # One event for the store and all it holds, as an import's is one (models/event.py).
    record_event(
        "store.created",
        resource_id=store_id,
        store_id=store_id,
        owner_id=None,
        actor_id=None,
        data=store_answer(db.session.get(StoreModel, store_id)).get_data(as_text=True),
        counts={"items": items, "tags": tags, "links": items if tag_ids else 0},
    )
    db.session.commit()
