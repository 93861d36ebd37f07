"""Backups with pgBackRest (tools/throwaway_backups.py): a real repository in a temp
directory, archiving a real cluster's WAL; restores into new clusters of their own."""

import itertools
import random
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from support import JWT_SECRET

from app import create_app
from config.settings import Settings
from tools.throwaway_backups import (
    AS_POSTGRES,
    InvalidRepositoryError,
    ThrowawayBackups,
    connect,
    throwaway_backups,
)
from tools.throwaway_postgres import ThrowawayPostgres, owned_temp_dir, throwaway_postgres

KEY = "a key only the backups know"
# A row's value that a readable repository would show: lz4 (unlike zst) keeps such literals
# as they are, so the repository is lz4-compressed here.
PLAINTEXT = "plaintext-in-the-repository"
COMPRESS_TYPE = "lz4"


@pytest.fixture(scope="module")
def archived() -> Iterator[tuple[ThrowawayPostgres, ThrowawayBackups]]:
    """A cluster archiving into an encrypted repository, with a full backup of a table of
    rows. It stamps each commit's time (track_commit_timestamp), which is what
    recovery_target_time compares."""
    with (
        throwaway_postgres() as cluster,
        throwaway_backups(
            cluster, {"track_commit_timestamp": "on"}, key=KEY, compress_type=COMPRESS_TYPE
        ) as backups,
    ):
        with connect(cluster) as db:
            db.execute("CREATE TABLE rows (id serial PRIMARY KEY, writer int, value text)")
            db.execute(
                "INSERT INTO rows (value) SELECT %s FROM generate_series(1, 100)", (PLAINTEXT,)
            )
        backups.backup("full")
        # pgBackRest restores to a time from the last backup that stopped before it, stop
        # times in whole seconds: the writes come after that second.
        stopped = backups.info()[0]["backup"][-1]["timestamp"]["stop"]
        time.sleep(max(0, stopped + 1 - time.time()))
        yield cluster, backups


def write(cluster: ThrowawayPostgres, writer: int, rows: int, log: list) -> None:
    """Commit `rows` rows one by one, a few milliseconds apart; log each row's id, the time
    the server stamped on its commit, and the time the commit was acknowledged here."""
    with connect(cluster) as db:
        for _ in range(rows):
            with db.transaction():
                row_id = db.execute(
                    "INSERT INTO rows (writer, value) VALUES (%s, 'written') RETURNING id",
                    (writer,),
                ).fetchone()[0]
            acknowledged = datetime.now().astimezone()
            committed = db.execute(
                "SELECT pg_xact_commit_timestamp(xmin) FROM rows WHERE id = %s", (row_id,)
            ).fetchone()[0]
            log.append((row_id, committed, acknowledged))
            time.sleep(random.uniform(0.005, 0.04))


def test_a_restore_to_a_second_holds_exactly_what_was_committed_before_it(archived):
    cluster, backups = archived
    log: list = []
    writers = [threading.Thread(target=write, args=(cluster, n, 25, log)) for n in (1, 2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    with connect(cluster) as db:
        # The operator's mistake that the restore undoes.
        db.execute("DELETE FROM rows WHERE writer IN (1, 2)")
    backups.check()  # every commit archived

    # T: in the middle of the widest gap between two commits of the middle half, so that no
    # commit falls on it.
    stamps = sorted(committed for _, committed, _ in log)
    middle = stamps[len(stamps) // 4 : 3 * len(stamps) // 4]
    before, after = max(itertools.pairwise(middle), key=lambda pair: pair[1] - pair[0])
    assert after - before > timedelta(milliseconds=2)
    target = before + (after - before) / 2

    with backups.restore(target_time=target) as restored, connect(restored) as db:
        present = {row for (row,) in db.execute("SELECT id FROM rows WHERE writer IN (1, 2)")}
    committed_before = {row for row, committed, _ in log if committed < target}
    assert 0 < len(committed_before) < len(log)
    assert present == committed_before
    # What a client saw acknowledged before T is there (acknowledged follows committed).
    assert {row for row, _, acknowledged in log if acknowledged < target} <= present


def test_the_repository_is_encrypted_and_restores_with_its_key(archived):
    cluster, backups = archived
    with connect(cluster) as db:
        db.execute("INSERT INTO rows (writer, value) VALUES (0, 'after the full backup')")
    backups.backup("incr")
    backups.check()
    assert [backup["type"] for backup in backups.info()[0]["backup"]][-1] == "incr"

    # Without the key: nothing readable, no restore.
    leaked = subprocess.run(
        ["grep", "-rlF", PLAINTEXT, backups.repo], capture_output=True, text=True
    )
    assert leaked.returncode == 1, leaked.stdout  # 1: no file holds it
    without_key = ["--reset-repo1-cipher-type"]
    with pytest.raises(InvalidRepositoryError, match=r"No usable backup\.info"):
        backups.verify(*without_key)
    elsewhere = owned_temp_dir("restore-without-key-")
    try:
        with pytest.raises(subprocess.CalledProcessError) as refused:
            backups.pgbackrest("restore", f"--pg1-path={elsewhere}", *without_key)
        assert "no backup set found" in refused.value.stderr
    finally:
        subprocess.run([*AS_POSTGRES, "rm", "-rf", elsewhere], check=True)

    # With it: the full and incremental backups, then the archive to its end.
    with backups.restore() as restored, connect(restored) as db:
        values = [value for (value,) in db.execute("SELECT value FROM rows ORDER BY id")]
    assert values.count(PLAINTEXT) == 100
    assert values[-1] == "after the full backup"


def test_verification_passes_on_the_repository_and_fails_on_a_damaged_copy(archived):
    _, backups = archived
    assert "status: ok" in backups.verify()

    copy = owned_temp_dir("damaged-repository-") / "repo"
    try:
        subprocess.run([*AS_POSTGRES, "cp", "-a", backups.repo, copy], check=True)
        damaged = max(
            (copy / "backup").rglob(f"*.{COMPRESS_TYPE}"), key=lambda file: file.stat().st_size
        )
        data = bytearray(damaged.read_bytes())
        data[len(data) // 2] ^= 0xFF
        damaged.write_bytes(bytes(data))
        with pytest.raises(InvalidRepositoryError, match="checksum invalid: 1"):
            backups.verify(f"--repo1-path={copy}")
    finally:
        subprocess.run([*AS_POSTGRES, "rm", "-rf", copy.parent], check=True)


@pytest.mark.parametrize(
    ("environment", "said"),
    [
        ({"PGBACKREST_STANZA": "another"}, r"stanza 'another': missing stanza path"),
        # Decrypted with a wrong key, its info file fails its padding's check, or (rarely)
        # passes it and is no info file.
        (
            {"PGBACKREST_REPO1_CIPHER_PASS": "a wrong key"},
            r"stanza 'main': \[(CryptoError|FormatError)\] ",
        ),
        (
            {"PGBACKREST_REPO1_CIPHER_TYPE": "none"},
            r"stanza 'main': \[FormatError\] unable to load info file",
        ),
    ],
)
def test_backup_window_says_what_pgbackrest_says_of_a_wrong_stanza_or_key(
    archived, environment, said
):
    """Not "no backup yet": pgBackRest's info lists none then, and says why in its status."""
    _, backups = archived
    app = create_app(Settings(jwt_secret_key=JWT_SECRET), TESTING=True)
    env = {"PGBACKREST_CONFIG": str(backups.config), "PGBACKREST_STANZA": "main", **environment}
    result = app.test_cli_runner().invoke(args=["backup-window"], env=env)
    assert result.exit_code == 1
    assert re.search(f"^Error: pgBackRest could not say: {said}", result.output), result.output
    assert all(each.isprintable() for each in result.output.replace("\n", "")), result.output
