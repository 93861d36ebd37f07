"""`flask prune-expired` and `flask purge-deleted`: what the app also does as it goes (keyed
writes and counted attempts prune; the job worker purges), for a backlog or without the
worker."""

import time
from datetime import UTC, datetime

import click
from flask.cli import with_appcontext

from config.settings import current_settings
from db import db, prune
from jobs.events import prune_old_events
from jobs.purge import purge_expired
from models import TokenFamilyModel
from security.throttle import prune_expired as prune_expired_throttles
from web.idempotency import prune_expired as prune_expired_keys


@click.command("prune-expired")
@with_appcontext
def prune_expired() -> None:
    """Forget token families whose tokens have all expired, throttle counts
    whose window is over, expired idempotency keys and events older than
    EVENTS_RETENTION_DAYS. Keyed writes and counted attempts prune as they go, the worker
    prunes events; this is for a backlog, from cron if you like."""
    now = datetime.now(UTC)
    families = prune(TokenFamilyModel, TokenFamilyModel.expires_at < now)
    throttles = prune_expired_throttles()
    keys = prune_expired_keys()
    db.session.commit()
    events = prune_old_events(current_settings().events_retention_days)
    click.echo(
        f"Pruned {families} token family(ies), {throttles} throttle count(s), "
        f"{keys} idempotency key(s) and {events} event(s), all expired."
    )


@click.command("purge-deleted")
@click.option(
    "--every",
    type=click.FloatRange(min=0, min_open=True),
    help="Run again every this many seconds, until stopped (what `make run` does).",
)
@with_appcontext
def purge_deleted(every: float | None) -> None:
    """Purge the deleted stores whose expire_time has passed, with all they held."""
    while True:
        purged = purge_expired(lambda store_id: click.echo(f"Purged store {store_id}."))
        click.echo(f"Purged {purged} expired store(s).")
        if every is None:
            return
        time.sleep(every)
