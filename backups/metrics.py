"""/metrics on backups (issue 40.6), registered by app.py; alert rules in deploy/prometheus/:

- from the status file the backup service writes (BACKUP_STATUS_PATH: `pgbackrest info
  --output=json`, replaced whole after each tick of deploy/backup/backup.sh; the API has no
  pgBackRest), the last good backup's age and the recoverable window's start, and beside it
  (BACKUP_STATUS_PATH.verify) whether the last `pgbackrest verify` found the repository whole;
- from the primary's pg_stat_archiver, archiving: segments archived and failed, when each
  last happened (the window's end: every commit before the last archived segment's switch).

Read when scraped, by each process for itself (no multiprocess files: these are the same
figures whichever worker answers). pg_stat_archiver is read in a thread of its own at most
every ARCHIVER_READ_EVERY seconds, and a scrape waits for it at most ARCHIVER_WAIT: a database
that cannot answer leaves its last figures (postgres_archiver_up 0), never a failed or a slow
/metrics.
"""

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.pool import NullPool

from backups.window import SEGMENT, BackupInfoError, Backups, read_status, segment_number
from config.settings import Settings

ARCHIVER_READ_EVERY = 10.0
ARCHIVER_WAIT = 0.25
# A read still waiting after this long: the database is not answering (up 0), though the
# read, left to its own timeouts, may end yet.
ARCHIVER_STUCK = 5.0
ARCHIVER = text(
    "SELECT archived_count, failed_count, coalesce(extract(epoch FROM last_archived_time), 0),"
    " coalesce(extract(epoch FROM last_failed_time), 0), last_archived_wal,"
    " pg_walfile_name(pg_current_wal_lsn()) FROM pg_stat_archiver"
)


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class BackupStatus(Collector):
    """The status file's figures, read again only when it changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.read: tuple[float, Backups | None] = (-1.0, None)

    def backups(self) -> Backups | None:
        try:
            changed = self.path.stat().st_mtime
            if changed != self.read[0]:
                self.read = (changed, read_status(self.path))
            return self.read[1]
        except (OSError, BackupInfoError):
            return None

    def verified(self) -> bool | None:
        """What the backup service's last verify found (BACKUP_STATUS_PATH.verify: ok or
        failed); None before any."""
        try:
            return Path(f"{self.path}.verify").read_text().strip() == "ok"
        except OSError:
            return None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        backups = self.backups()
        yield gauge(
            "backup_status_readable", "1 if BACKUP_STATUS_PATH, the backup service's account "
            "of the repository, could be read; 0: the figures below are unknown",
            backups is not None,
        )  # fmt: skip
        verified = self.verified()
        if verified is not None:
            yield gauge(
                "backup_repository_verified", "1 if the backup service's last `pgbackrest "
                "verify` found every backup and WAL file whole; 0: one damaged or missing, "
                "or the verify failed. Absent before the first",
                verified,
            )  # fmt: skip
        last = backups.stops[-1] if backups and backups.stops else None
        yield gauge(
            "backup_last_good_age_seconds", "Seconds since the last good backup (full, "
            "differential or incremental) stopped; +Inf with none, or the status unreadable",
            time.time() - last if last is not None else math.inf,
        )  # fmt: skip
        if backups and backups.stops:
            yield gauge(
                "backup_recoverable_earliest_timestamp_seconds", "The earliest time a restore "
                "reaches (Unix time): the oldest backup kept, once it stopped",
                backups.earliest_restorable.timestamp(),
            )  # fmt: skip


class Archiver(Collector):
    """pg_stat_archiver of the database `engine` connects to (DATABASE_URL's: the primary),
    read in the background, its last answer kept."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.figures: tuple | None = None
        self.up = False
        self.read_at = -math.inf
        self.reading: threading.Thread | None = None
        self.lock = threading.Lock()

    def refresh(self) -> None:
        try:
            with self.engine.connect() as connection:
                self.figures = tuple(connection.execute(ARCHIVER).one())
                self.up = True
        except Exception:  # down, refused, timed out, a standby: not known now, whatever it is
            self.up = False

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        with self.lock:
            since = time.monotonic() - self.read_at
            pending = self.reading is not None and self.reading.is_alive()
            if since >= ARCHIVER_READ_EVERY and not pending:
                self.read_at, since = time.monotonic(), 0.0
                self.reading = threading.Thread(target=self.refresh, daemon=True)
                self.reading.start()
            reading = self.reading
        reading.join(ARCHIVER_WAIT)
        stuck = reading.is_alive() and since >= ARCHIVER_STUCK
        yield gauge(
            "postgres_archiver_up", "1 if the primary's pg_stat_archiver answered its last "
            "read (every 10 s at most) within 5 s; 0: the archiver figures below are the last "
            "known", self.up and not stuck,
        )  # fmt: skip
        if self.figures is None:
            return
        archived, failed, last_archived, last_failed, archived_wal, current_wal = self.figures
        yield CounterMetricFamily(
            "postgres_archiver_archived", "WAL segments archived (pg_stat_archiver, since its "
            "statistics were last reset)", value=archived,
        )  # fmt: skip
        yield CounterMetricFamily(
            "postgres_archiver_failed", "Attempts to archive a WAL segment that failed "
            "(pg_stat_archiver)", value=failed,
        )  # fmt: skip
        yield gauge(
            "postgres_archiver_last_archived_timestamp_seconds", "When the last WAL segment was "
            "archived (Unix time; 0: never)", float(last_archived),
        )  # fmt: skip
        if last_archived:
            yield gauge(
                "backup_recoverable_latest_timestamp_seconds", "The latest time a restore "
                "reaches (Unix time), to within a segment: when the last WAL segment was "
                "archived. `flask backup-window` gives the exact end, the last commit archived",
                float(last_archived),
            )  # fmt: skip
        yield gauge(
            "postgres_archiver_last_failed_timestamp_seconds", "When archiving last failed (Unix "
            "time; 0: never). Later than the last archived: failing now",
            float(last_failed),
        )  # fmt: skip
        yield gauge(
            "postgres_archiver_segments_waiting", "WAL segments complete but not archived yet "
            "(the one being written not counted): above 1 or 2 for long, archiving is stuck "
            "(a command that hangs fails nothing) or cannot keep up",
            segments_waiting(archived_wal, current_wal),
        )  # fmt: skip


def segments_waiting(archived: str | None, current: str) -> int:
    """How many segments lie between the last archived (a segment's name, or a .partial or
    .history file's after a promotion) and the one being written, whatever the timelines."""
    if archived is None or not SEGMENT.match(archived[:24]):
        return segment_number(current)[1]  # none archived yet: every one before
    return max(0, segment_number(current)[1] - segment_number(archived[:24])[1] - 1)


def backup_collectors(settings: Settings, url: str, options: dict) -> CollectorRegistry:
    """The backups' figures, for /metrics to read when scraped: PostgreSQL's archiver, and
    the backup service's status where BACKUP_STATUS_PATH names it."""
    registry = CollectorRegistry(auto_describe=False)
    if make_url(url).get_backend_name() == "postgresql":
        # The app's database and connection options, but an engine of its own, without a
        # pool: the archiver's reads take no connection from the requests' pool and leave
        # its figures (connections in use, reconnections) to the requests.
        archiver = create_engine(url, poolclass=NullPool, **options)
        registry.register(Archiver(archiver))
    if settings.backup_status_path:
        registry.register(BackupStatus(Path(settings.backup_status_path)))
    return registry
