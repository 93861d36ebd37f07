"""`flask restore-store` from a real pgBackRest repository (tools/throwaway_backups.py) into
the live database it backs up: a purged store comes back as it was, an erased one never; nor
through a restore of the whole database, once `flask apply-erasures` has run."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import migrated_app
from flask import Flask
from flask.testing import FlaskClient
from support import bearer_of
from support.api import change_settings, new_store, purge, signed_in

from backups.restored import why_it_stopped
from db import db
from models import UserModel
from security.tokens import issue_tokens
from tools.throwaway_backups import ThrowawayBackups, connect, throwaway_backups
from tools.throwaway_patroni import wait_for
from tools.throwaway_postgres import (
    AS_POSTGRES,
    ThrowawayPostgres,
    owned_temp_dir,
    throwaway_postgres,
)


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """The app on a cluster archiving into a repository (its erasure log its own), with a
    full backup of a store of 3 items (one with a newline in its description), 2 tags and 2
    links; a second later, so that pgBackRest restores to any time from now on."""
    log = tmp_path_factory.mktemp("erasures") / "erasures.jsonl"
    with throwaway_postgres() as cluster, throwaway_backups(cluster) as backups:
        app = migrated_app(cluster.url("psycopg2"), erasure_log_path=str(log))
        with connect(cluster) as db:
            (store_id,) = db.execute(
                "INSERT INTO stores (name) VALUES ('Lamps') RETURNING id"
            ).fetchone()
            db.execute(
                "INSERT INTO items (name, price, sku, description, store_id)"
                " SELECT 'lamp ' || n, n, 'L-' || n, E'two\\nlines', %s"
                " FROM generate_series(1, 3) n",
                (store_id,),
            )
            db.execute("INSERT INTO tags (name, store_id) VALUES ('new', %s), ('sale', %s)",
                       (store_id, store_id))  # fmt: skip
            db.execute("INSERT INTO items_tags SELECT min(items.id), tags.id FROM items, tags"
                       " GROUP BY tags.id")  # fmt: skip
        backups.backup("full")
        # pgBackRest restores to a time after the backup's stop, in whole seconds.
        time.sleep(1.1)
        yield app, cluster, backups, store_id


@pytest.fixture(scope="module")
def admin(backed_up) -> FlaskClient:
    """A client of the app signed in as an admin, with a fresh token."""
    app = backed_up[0]
    with app.app_context():
        user = UserModel(username="root", email="root@example.com", password_hash="-", role="admin")
        db.session.add(user)
        db.session.commit()
    with app.test_request_context():
        return signed_in(app, bearer_of(issue_tokens(user, fresh=True)["access_token"]))


def moment() -> datetime:
    """A time with no commit close to it on either side."""
    time.sleep(0.1)
    at = datetime.now(UTC)
    time.sleep(0.1)
    return at


def restore_store(app, backups: ThrowawayBackups, *args: str):
    environment = {"PGBACKREST_CONFIG": str(backups.config), "PGBACKREST_STANZA": "main"}
    return app.test_cli_runner().invoke(args=["restore-store", *args], env=environment)


def test_a_purged_store_comes_back_as_it_was(backed_up):
    app, cluster, backups, store_id = backed_up
    client = app.test_client()
    before = client.get(f"/store/{store_id}").get_json()
    items_before = client.get(f"/store/{store_id}/item").get_json()
    at = moment()
    with connect(cluster) as db:
        db.execute("DELETE FROM stores WHERE id = %s", (store_id,))  # what the purge does
    backups.check()
    assert client.get(f"/store/{store_id}").status_code == 404

    restored = restore_store(app, backups, str(store_id), "--at", at.isoformat())

    assert restored.exit_code == 0, restored.output
    assert f"Store {store_id} is back as store {store_id} ('Lamps')" in restored.output
    assert "3 items, 2 tags, 2 items_tags" in restored.output
    assert client.get(f"/store/{store_id}").get_json() == before
    assert client.get(f"/store/{store_id}/item").get_json() == items_before


def test_a_time_before_any_backup_is_refused_saying_why(backed_up):
    app, _cluster, backups, store_id = backed_up
    refused = restore_store(app, backups, str(store_id), "--at", "2000-01-01T00:00:00Z")
    assert refused.exit_code == 1
    assert "pgBackRest could not restore to 2000-01-01 00:00:00+00:00" in refused.output


def test_a_time_the_archive_does_not_reach_yet_is_refused_saying_why(backed_up):
    app, _cluster, backups, store_id = backed_up
    later = datetime.now(UTC) + timedelta(hours=1)
    refused = restore_store(app, backups, str(store_id), "--at", later.isoformat())
    assert refused.exit_code == 1, refused.output
    assert "recovery ended before configured recovery target was reached" in refused.output


def test_the_refusal_is_the_recoverys_own_word_not_a_refused_connections():
    """Ending, the server refuses the connections that wait for its promotion, each refusal
    a FATAL line of its log too, and some come after recovery's own (seen in a CI run)."""
    server = ThrowawayPostgres(data_from=Path.mkdir)
    try:
        server.log_path.write_text(
            "2026-12-04 11:00:00.100 UTC [71] [startup] FATAL:  recovery ended before"
            " configured recovery target was reached\n"
            "2026-12-04 11:00:00.150 UTC [72] [client backend] FATAL:  the database system is"
            " in recovery mode\n"
            "2026-12-04 11:00:00.200 UTC [70] [postmaster] LOG:  database system is shut down\n"
        )
        assert server.has_stopped()
        assert why_it_stopped(server) == (
            "recovery ended before configured recovery target was reached"
        )
    finally:
        server.remove()


def test_an_erased_store_is_refused_as_the_database_or_the_log_says(
    backed_up, admin, monkeypatch, tmp_path
):
    app, cluster, backups, _ = backed_up
    store = new_store(admin, "Erased")
    at = moment()
    assert admin.post(f"/store/{store['id']}/purge").status_code == 202
    assert purge(app) == [store["id"]]
    backups.check()
    refused = f"Store {store['id']} was erased (POST /store/{store['id']}/purge)"

    # The live database's erasure, with no log.
    with monkeypatch.context() as changed:
        change_settings(changed, app, erasure_log_path=str(tmp_path / "none.jsonl"))
        by_the_table = restore_store(app, backups, str(store["id"]), "--at", at.isoformat())
    # The log's, the live database restored from before the request (its erasure gone).
    with connect(cluster) as live:
        live.execute("DELETE FROM erasures")
    by_the_log = restore_store(
        app, backups, str(store["id"]), "--at", at.isoformat(), "--as", "Another name"
    )

    for result in (by_the_table, by_the_log):
        assert result.exit_code == 1, result.output
        assert refused in result.output
    # No log there: said, in case ERASURE_LOG_PATH is wrong.
    assert f"Warning: no erasure log at {tmp_path / 'none.jsonl'}" in by_the_table.stderr
    assert "Warning" not in by_the_log.stderr
    with connect(cluster) as live:
        assert live.execute("SELECT count(*) FROM stores WHERE id = %s OR name = %s",
                            (store["id"], "Another name")).fetchone() == (0,)  # fmt: skip


def test_an_erasure_log_path_that_is_a_directory_is_refused_saying_so(
    backed_up, monkeypatch, tmp_path
):
    app, _cluster, backups, store_id = backed_up
    change_settings(monkeypatch, app, erasure_log_path=str(tmp_path))
    restored = restore_store(app, backups, str(store_id), "--at", moment().isoformat())
    applied = app.test_cli_runner().invoke(args=["apply-erasures"])
    for result in (restored, applied):
        assert result.exit_code == 1, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert (
            f"Error: The erasure log {tmp_path} (ERASURE_LOG_PATH) cannot be used: Is a directory."
            in result.output
        )


def test_a_whole_restore_then_apply_erasures_erases_again_and_only_that(backed_up, admin):
    app, _cluster, backups, _ = backed_up
    early, kept = new_store(admin, "Early"), new_store(admin, "Kept")
    at = moment()
    late = new_store(admin, "Late")
    for erased in (early, late):
        assert admin.post(f"/store/{erased['id']}/purge").status_code == 202
    assert sorted(purge(app)) == [early["id"], late["id"]]
    backups.check()

    with backups.restore(at) as restored:
        log = app.extensions["settings"].erasure_log_path
        again = migrated_app(restored.url("psycopg2"), erasure_log_path=log)
        with connect(restored) as database:
            # A store that got the late erased store's id after the restore.
            database.execute("INSERT INTO stores (id, name) VALUES (%s, 'New')", (late["id"],))
            stores = "SELECT id, name, created_at FROM stores ORDER BY id"
            before = database.execute(stores).fetchall()
            first, second = (
                again.test_cli_runner().invoke(args=["apply-erasures"]) for _ in range(2)
            )
            after = database.execute(stores).fetchall()
            erasures = database.execute("SELECT store_id FROM erasures").fetchall()
        dispose(again)

    assert [store_id for store_id, *_ in before if store_id == early["id"]] == [early["id"]]
    assert after == [row for row in before if row[0] != early["id"]]
    assert (late["id"], "New") in [tuple(row[:2]) for row in after]
    assert (kept["id"], "Kept") in [tuple(row[:2]) for row in after]
    assert {(early["id"],), (late["id"],)} <= set(erasures)
    assert first.exit_code == 0, first.output
    assert f"purged 1 erased store(s) {early['id']}." in first.output
    assert second.exit_code == 0, second.output
    assert second.output.startswith(f"0 erasure(s) of {log} put back in the database, 0 of")
    assert "purged 0 erased store(s)." in second.output


def dispose(app: Flask) -> None:
    """Close the app's connections, before its server goes."""
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


def restore_store_started(cluster, backups: ThrowawayBackups, own_tmp, *args: str):
    """`flask restore-store ARGS` in a process of its own, its restored server in `own_tmp`,
    for a commit after now (so that the restore reaches it)."""
    with connect(cluster) as db:
        db.execute("SELECT txid_current()")
    backups.check()
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "restore-store", *args],
        env={**os.environ, "FLASK_APP": "app:create_app", "DATABASE_URL": cluster.url("psycopg2"),
             "JWT_SECRET_KEY": "k" * 40, "PGBACKREST_CONFIG": str(backups.config),
             "PGBACKREST_STANZA": "main", "TMPDIR": str(own_tmp)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def pids(*pgrep: str) -> list[int]:
    found = subprocess.run(["pgrep", *pgrep], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGHUP])
def test_a_restore_stopped_by_a_signal_leaves_no_server_and_no_copy(backed_up, signal_number):
    """`docker stop` (SIGTERM) or a closed terminal (SIGHUP) while the restored server runs:
    the command still stops it and removes its directory, as Ctrl-C does."""
    _app, cluster, backups, store_id = backed_up
    own_tmp = owned_temp_dir("restore-store-tmp-")  # where the command's server goes
    at = moment()
    command = restore_store_started(
        cluster, backups, own_tmp, str(store_id), "--at", at.isoformat(), "--as", "Stopped"
    )
    try:
        wait_for(lambda: any(own_tmp.glob("*/data/postmaster.pid")), "the restored server", 60)
        command.send_signal(signal_number)
        assert command.wait(timeout=60) == 128 + signal_number, command.stdout.read()
        assert list(own_tmp.iterdir()) == []  # its server stopped, its directory gone
    finally:
        command.kill()
        subprocess.run([*AS_POSTGRES, "rm", "-rf", own_tmp], check=True)


def test_a_signal_during_pgbackrests_restore_ends_all_of_it_and_leaves_no_directory(backed_up):
    """SIGTERM while pgBackRest restores (held there: its processes stopped): it and its
    `restore:local` processes are killed, not left behind, and its directory removed."""
    _app, cluster, backups, store_id = backed_up
    own_tmp = owned_temp_dir("restore-store-tmp-")
    pgbackrest = ["-f", f"^(\\S*/)?pgbackrest .*--pg1-path={own_tmp}"]
    command = restore_store_started(
        cluster, backups, own_tmp, str(store_id), "--at", moment().isoformat(), "--as", "Held"
    )
    held = []
    try:
        deadline = time.monotonic() + 60
        while not (held := pids(*pgbackrest)):
            assert command.poll() is None, command.stdout.read()
            assert time.monotonic() < deadline
            time.sleep(0.005)
        for pid in held:
            os.kill(pid, signal.SIGSTOP)
        command.send_signal(signal.SIGTERM)
        assert command.wait(timeout=60) == 128 + signal.SIGTERM, command.stdout.read()
        assert pids(*pgbackrest) == []
        assert list(own_tmp.iterdir()) == []
    finally:
        command.kill()
        for pid in pids(*pgbackrest):  # left behind: what the test found wrong
            os.kill(pid, signal.SIGKILL)
        subprocess.run([*AS_POSTGRES, "rm", "-rf", own_tmp], check=True)


def test_a_signal_after_the_copy_committed_waits_for_the_cleanup_and_the_report(backed_up):
    """SIGTERM once the store is written, while the restored server is being removed (held
    there: its postmaster stopped): the command finishes, and says what it did."""
    _app, cluster, backups, store_id = backed_up
    own_tmp = owned_temp_dir("restore-store-tmp-")
    command = restore_store_started(
        cluster, backups, own_tmp, str(store_id), "--at", moment().isoformat(), "--as", "Late"
    )
    postmaster = None
    try:

        def written() -> bool:
            with connect(cluster) as db:
                return db.execute("SELECT 1 FROM stores WHERE name = 'Late'").fetchone()

        while not written():
            assert command.poll() is None, command.stdout.read()
            if pid_files := list(own_tmp.glob("*/data/postmaster.pid")):
                postmaster = int(pid_files[0].read_text().split()[0])
            time.sleep(0.005)
        os.kill(postmaster, signal.SIGSTOP)
        command.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        os.kill(postmaster, signal.SIGCONT)
        output = command.communicate(timeout=60)[0]
        assert command.returncode == 0, output
        assert f"Store {store_id} is back as store" in output
        assert "SIGTERM came after the copy: finished first." in output
        assert list(own_tmp.iterdir()) == []
    finally:
        command.kill()
        if postmaster is not None:  # a server left behind: what the test found wrong
            with suppress(ProcessLookupError):
                os.kill(postmaster, signal.SIGCONT)
                os.kill(postmaster, signal.SIGQUIT)
        subprocess.run([*AS_POSTGRES, "rm", "-rf", own_tmp], check=True)
