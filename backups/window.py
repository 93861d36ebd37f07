"""What the backups can restore, from pgBackRest's own account of its repository (`pgbackrest
info --output=json`): the last good backup, and the recoverable window, from the oldest good
backup's end to the last commit the WAL archive holds. Read by `flask backup-window` where
pgBackRest is, and by /metrics from the status file the backup service writes
(BACKUP_STATUS_PATH; backups/metrics.py).
"""

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tools.throwaway_postgres import AS_POSTGRES

# A segment of WAL archived: its timeline, then its number in two halves (16 MB segments: 256
# to a "log").
SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
# pg_waldump's line of a commit record: "desc: COMMIT 2026-12-04 05:12:13.123456 UTC".
COMMIT = re.compile(r"desc: COMMIT (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC")
# The stanza's status codes of `pgbackrest info` under which its backups were read: ok, and
# "no valid backups".
STANZA_READ = {0, 2}
# How pgBackRest compresses what it archives (compress-type; deploy/backup/backup.sh: zst),
# by the file's extension: undone by the tool of that name.
DECOMPRESS = {
    "zst": ["zstd", "-dc"],
    "lz4": ["lz4", "-dc"],
    "gz": ["gzip", "-dc"],
    "bz2": ["bzip2", "-dc"],
}


class BackupInfoError(Exception):
    """pgBackRest could not say what the repository holds: what it said."""


@dataclass(frozen=True)
class Backups:
    """The good backups of the repository's current stanza (pgBackRest lists only backups that
    completed; one whose pages failed their checksums is not good), oldest first, as when each
    stopped (epoch seconds), and the newest WAL segment archived."""

    stops: list[int]
    stanza: str
    # The archive of the stanza's current PostgreSQL (e.g. "15-1"), its oldest and newest
    # segments; None before any.
    archive_id: str | None
    oldest_segment: str | None
    newest_segment: str | None
    # The WAL segment the oldest good backup started in: no restore needs one before.
    oldest_backup_start: str | None

    @property
    def last_good(self) -> datetime | None:
        return epoch(self.stops[-1]) if self.stops else None

    @property
    def earliest_restorable(self) -> datetime | None:
        """The first second a restore to a time reaches: after the oldest backup's stop,
        which pgBackRest gives in whole seconds."""
        return epoch(self.stops[0] + 1) if self.stops else None


def epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def backups_of(info: list[dict]) -> Backups:
    """The stanza's backups and archive as `pgbackrest info --output=json` gives them (one
    stanza: the deployment's)."""
    if len(info) != 1:
        raise BackupInfoError(f"one stanza expected, the repository has {len(info)}")
    (stanza,) = info
    # pgBackRest's word on the stanza: a wrong stanza, a wrong or missing key show as one
    # without backups, with what is wrong said in its status, or for "other" in its
    # repository's ("missing stanza path", "[CryptoError] ...").
    if stanza.get("status", {}).get("code", 0) not in STANZA_READ:
        statuses = [repo["status"] for repo in stanza.get("repo", [])] or [stanza["status"]]
        said = "; ".join(
            status["message"] for status in statuses if status["code"] not in STANZA_READ
        )
        said = said or stanza["status"]["message"]
        # Undecryptable bytes quoted as they are: no control character reaches a terminal.
        said = "".join(each if each.isprintable() or each == "\n" else "?" for each in said)
        raise BackupInfoError(f"stanza {stanza['name']!r}: {said}")
    backups = stanza.get("backup", [])
    good = sorted(
        (backup for backup in backups if not backup.get("error")),
        key=lambda backup: backup["timestamp"]["stop"],
    )
    stops = [backup["timestamp"]["stop"] for backup in good]
    start = good[0]["archive"]["start"] if good else None
    # One entry per PostgreSQL version and system the stanza archived; the last is the current.
    archives = [archive for archive in stanza.get("archive", []) if archive.get("max")]
    if not archives:
        return Backups(stops, stanza["name"], None, None, None, start)
    archive = archives[-1]
    return Backups(stops, stanza["name"], archive["id"], archive["min"], archive["max"], start)


def parsed_info(raw: bytes) -> list[dict]:
    """`pgbackrest info --output=json`'s output. Its messages quote what it could not decrypt
    or read as it is: bytes that may be no UTF-8, control characters."""
    return json.loads(raw.decode(errors="replace"), strict=False)


def read_status(path: Path) -> Backups:
    """The status file the backup service writes (deploy/backup/backup.sh); BackupInfoError for
    a file that is not pgBackRest's account of one stanza, whatever else it holds."""
    try:
        backups = backups_of(parsed_info(path.read_bytes()))
        for stop in backups.stops:
            epoch(stop)  # a time, not another number or some other thing
        return backups
    except (OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError,
            RecursionError) as unread:  # fmt: skip
        raise BackupInfoError(f"{path}: {type(unread).__name__}: {unread}") from unread


def pgbackrest(*arguments: str) -> bytes:
    """A pgBackRest command, as restores run it (backups/restored.py): its configuration and
    stanza its own (PGBACKREST_CONFIG, PGBACKREST_STANZA); what it printed."""
    run = subprocess.run([*AS_POSTGRES, "pgbackrest", *arguments], capture_output=True)
    if run.returncode:
        said = (run.stderr or run.stdout).decode(errors="replace").strip()
        raise BackupInfoError(said)
    return run.stdout


def repository_backups() -> Backups:
    return backups_of(parsed_info(pgbackrest("--output=json", "info")))


def segment_number(name: str) -> tuple[int, int]:
    """A WAL segment's timeline and its number on it."""
    timeline, log, segment = (int(part, 16) for part in SEGMENT.match(name).groups())
    return timeline, log * 0x100 + segment


def archived_segment(backups: Backups, name: str) -> bytes | None:
    """WAL segment `name` as the archive holds it, decrypted (pgBackRest's repo-get) and
    decompressed; None if it holds none. Not archive-get, which checks the segment against
    a data directory's pg_control: where restores run (the restore service), there is none."""
    directory = f"archive/{backups.stanza}/{backups.archive_id}/{name[:16]}"
    listed = pgbackrest("repo-ls", f"--filter=^{name}-", directory).decode().split()
    if not listed:
        return None
    (file,) = listed  # the segment, its checksum and its compression's extension in its name
    stored = pgbackrest("repo-get", f"{directory}/{file}")
    extension = file.rpartition(".")[2]
    if extension not in DECOMPRESS:
        return stored
    return subprocess.run(
        DECOMPRESS[extension], input=stored, capture_output=True, check=True
    ).stdout


def last_archived_commit(backups: Backups, bindir: Path) -> datetime | None:
    """The time of the last commit the archive holds, read by pg_waldump from its segments on
    the newest timeline, newest first, back to the oldest backup's start at most (an idle
    database's last segments may hold none: each check and backup switches to a new one);
    None when they hold none. A restore to a time needs a commit after it, so this bounds
    the window."""
    timeline, newest = segment_number(backups.newest_segment)
    first = 0
    for bound in (backups.oldest_segment, backups.oldest_backup_start):
        if bound is not None and segment_number(bound)[0] == timeline:
            first = max(first, segment_number(bound)[1])
    with tempfile.TemporaryDirectory(prefix="backup-window-") as directory:
        for each in range(newest, first - 1, -1):
            name = f"{timeline:08X}{each // 0x100:08X}{each % 0x100:08X}"
            segment = archived_segment(backups, name)
            if segment is None:
                return None  # before the timeline's first segment
            copy = Path(directory) / name  # pg_waldump knows where it is by its name
            copy.write_bytes(segment)
            # pg_waldump ends with an error at the segment's unwritten tail: what it read
            # before is printed all the same. Times in UTC, whatever the machine's zone.
            dump = subprocess.run(
                [bindir / "pg_waldump", str(copy)],
                capture_output=True, text=True, errors="replace", env={"TZ": "UTC"},
            )  # fmt: skip
            commits = COMMIT.findall(dump.stdout)
            if commits:
                return datetime.fromisoformat(commits[-1]).replace(tzinfo=UTC)
            copy.unlink()
    return None


def latest_restorable(last_commit: datetime) -> datetime:
    """The last time a restore reaches: just before the last archived commit (pg_waldump
    prints microseconds)."""
    return last_commit - timedelta(microseconds=1)
