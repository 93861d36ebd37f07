"""Pruning the event feed: events older than EVENTS_RETENTION_DAYS go, oldest first, in
batches of one short transaction each, as a purge's (jobs/purge.py); a cursor from before
them is then answered 410 (models/event.py keeps where the pruning got to)."""

from datetime import UTC, datetime, timedelta

from models.event import prune_events

# About a tenth of a second of deleting on PostgreSQL here.
BATCH_EVENTS = 10_000


def prune_old_events(retention_days: float) -> int:
    """Delete the events older than `retention_days`; how many."""
    older_than = datetime.now(UTC) - timedelta(days=retention_days)
    pruned = 0
    while batch := prune_events(older_than, BATCH_EVENTS):
        pruned += batch
    return pruned
