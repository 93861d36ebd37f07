"""`flask import-items` and `flask export-items`: a store's catalogue in and out from the
command line, with a progress bar on a terminal. The import runs here, not on the worker,
and as POST /store/<id>/item/import does: all or nothing."""

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, TextIO

import click
from flask.cli import with_appcontext

from catalogue.exporting import exported_lines
from catalogue.lines import CSV, JSON_LINES
from catalogue.runs import file_chunks, run
from db import db
from models import ItemImportModel, StoreModel
from models.item_import import SUCCEEDED
from models.queries import get_live

FORMATS = {".csv": CSV, ".jsonl": JSON_LINES, ".ndjson": JSON_LINES}


class Progress:
    """Rows so far and rows per second, on one line of a terminal; nothing elsewhere."""

    def __init__(self, what: str, unit: str = "lines") -> None:
        self.what, self.unit, self.started = what, unit, time.monotonic()
        self.shown = sys.stderr.isatty()
        self.rows = 0

    def __call__(self, rows: int) -> None:
        if self.shown:
            rate = rows / max(time.monotonic() - self.started, 1e-6)
            click.echo(
                f"\r{self.what} {rows:,} {self.unit} ({rate:,.0f} {self.unit}/s)",
                nl=False,
                err=True,
            )

    def add(self, more: int) -> None:
        """`more` rows since the last call."""
        self.rows += more
        self(self.rows)

    def done(self) -> None:
        if self.shown:
            click.echo(err=True)


def media_type_of(path: str, given: str | None) -> str:
    if given is not None:
        return FORMATS[f".{given}"]
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise click.BadParameter("name it .jsonl or .csv, or give --format", param_hint="FILE")
    return FORMATS[suffix]


def live_store(store_id: int) -> StoreModel:
    store = get_live(StoreModel, store_id)
    if store is None:
        raise click.ClickException(f"No live store {store_id}.")
    return store


FORMAT = click.option(
    "--format", "format_", type=click.Choice(["jsonl", "csv"]),
    help="The file's format; by default, by its name (.jsonl, .csv).",
)  # fmt: skip


@click.command("import-items")
@click.argument("store_id", type=int)
@click.argument("file", type=click.File("rb"))
@FORMAT
@with_appcontext
def import_items(store_id: int, file: BinaryIO, format_: str | None) -> None:
    """Import the items of FILE (JSON Lines or CSV) into store STORE_ID, all or nothing."""
    media_type = media_type_of(file.name, format_)
    live_store(store_id)
    item_import = ItemImportModel(
        store_id=store_id, media_type=media_type, size=0, created_at=datetime.now(UTC)
    )
    db.session.add(item_import)
    db.session.flush()
    progress = Progress("Imported")
    run(item_import, file_chunks(file), lambda _state, lines_read: progress(lines_read))
    db.session.commit()
    progress.done()
    if item_import.state != SUCCEEDED:
        for bad in item_import.bad_lines:
            click.echo(f"line {bad['line']}: {bad['errors']}", err=True)
        raise click.ClickException(
            item_import.message or f"{item_import.error_count:,} bad line(s): nothing imported."
        )
    click.echo(
        f"Imported {item_import.items:,} items into store {store_id}, "
        f"{item_import.tags_created:,} new tags, {item_import.links:,} links."
    )


@click.command("export-items")
@click.argument("store_id", type=int)
@click.argument("file", type=click.File("w", encoding="utf-8"))
@FORMAT
@with_appcontext
def export_items(store_id: int, file: TextIO, format_: str | None) -> None:
    """Export the items of store STORE_ID into FILE (JSON Lines or CSV)."""
    media_type = media_type_of(file.name, format_)
    live_store(store_id)
    db.session.rollback()
    progress, rows = Progress("Exported"), 0
    for lines in exported_lines(store_id, media_type):
        file.write(lines)
        rows += lines.count("\n")
        progress(rows)
    progress.done()
    header = 1 if media_type == CSV else 0
    click.echo(f"Exported {rows - header:,} items of store {store_id}.", err=file is sys.stdout)
