"""What a lost database loses (issue 40, point 2): writers with Idempotency-Keys POST /item
under load through gunicorn; the primary, archiving with pgBackRest, is killed (SIGKILL, every
process of it) and its data directory removed; a new server is restored from what the backup
host holds alone. Acknowledged writes lost, doubled and invented are counted and printed.

Archiving alone loses at most the writes of the last archive_timeout (and the push of the last
segment); with pg_receivewal as a synchronous standby, none."""

import os
import shutil
import signal
import subprocess
import threading
import time
from contextlib import ExitStack
from itertools import count

import psycopg
import pytest
import requests
from support.http import server_env, sign_up
from support.partition import answer
from support.replication import children_of, migrate
from support.threads import Clients

from tools.gunicorn_server import API, gunicorn
from tools.throwaway_backups import throwaway_backups, wal_receiver
from tools.throwaway_postgres import ThrowawayPostgres, throwaway_postgres

pytestmark = pytest.mark.one_driver

# Short, for a quick test: what archiving alone can lose scales with it (compose: 60 s).
ARCHIVE_TIMEOUT = 5
# A segment switched at archive_timeout is in the repository only once the archiver has run
# archive-push on it: a process start, zst and a write, well under a second, 2 s on a loaded
# machine; and the switch itself comes up to the checkpointer's wake-up late.
MARGIN = 2.5
WRITERS = 3
LOAD_SECONDS = 2 * ARCHIVE_TIMEOUT + 1  # across two segment switches at least


class Writers(Clients):
    """WRITERS clients POSTing items one after another, each with its name as its
    Idempotency-Key, sent again until answered 2xx; what each was answered, and when."""

    def __init__(self, base_url: str, headers: dict, store_id: int) -> None:
        self.base_url, self.headers, self.store_id = base_url, headers, store_id
        self.answers: list[dict] = []
        super().__init__([threading.Thread(target=self.write, args=(n,)) for n in range(WRITERS)])

    def write(self, writer: int) -> None:
        for number in count():
            name = f"writer {writer} item {number}"
            item = {"name": name, "price": 1, "store_id": self.store_id}
            headers = {**self.headers, "Idempotency-Key": name}
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    response = requests.post(
                        f"{self.base_url}/item", json=item, headers=headers, timeout=60
                    )
                except requests.RequestException:
                    continue  # not acknowledged
                self.answers.append(answer("write", started, response, name))
                if response.status_code in (200, 201):
                    break
                time.sleep(0.1)
            if self.stop.is_set():
                return

    def acknowledged(self) -> dict[str, float]:
        """Each acknowledged item's name, and when its answer came."""
        return {a["key"]: a["ended"] for a in self.answers if a["status"] in (200, 201)}

    def attempted(self) -> set[str]:
        return {a["key"] for a in self.answers}


def destroyed(cluster: ThrowawayPostgres) -> float:
    """Kill every process of the server at once (SIGKILL: nothing flushed, nothing archived
    more) and remove its data directory, as a lost disk would; when."""
    postmaster = cluster.postmaster_pid()
    at = time.monotonic()
    os.kill(postmaster, signal.SIGKILL)  # first: it forks nothing more
    for pid in children_of(postmaster):
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(cluster.data)
    return at


def items_counted(restored: ThrowawayPostgres) -> dict[str, int]:
    with psycopg.connect(restored.url().replace("+psycopg", ""), autocommit=True) as db:
        return dict(db.execute("SELECT name, count(*) FROM items GROUP BY name").fetchall())


def written_then_destroyed(stack: ExitStack, driver: str, zero_loss: bool) -> dict:
    """Run the load, destroy the primary under it, restore from the backup host alone; the
    writes lost, doubled and invented, and how long before the destruction each lost one was
    acknowledged."""
    cluster = stack.enter_context(throwaway_postgres())
    backups = stack.enter_context(
        throwaway_backups(cluster, {"archive_timeout": str(ARCHIVE_TIMEOUT)})
    )
    receiver = stack.enter_context(wal_receiver(cluster)) if zero_loss else None
    migrate(cluster)
    backups.backup("full")
    # Its log would be hundreds of 503 lines, once the database is gone.
    env = server_env(cluster.url(driver))
    with gunicorn(API, env, "--workers", "2", stderr=subprocess.DEVNULL) as server:
        headers = sign_up(server.url, "archived")
        store = requests.post(
            f"{server.url}/store", json={"name": "Archived"}, headers=headers, timeout=30
        ).json()
        with Writers(server.url, headers, store["id"]) as writers:
            time.sleep(LOAD_SECONDS)
            destroyed_at = destroyed(cluster)
            time.sleep(0.5)  # the writers meet the loss
    if receiver is not None:
        receiver.stop()
    streamed = receiver.wal if receiver is not None else None
    with backups.restore(streamed_wal=streamed) as restored:
        counted = items_counted(restored)

    acknowledged = writers.acknowledged()
    lost = {name: destroyed_at - at for name, at in acknowledged.items() if name not in counted}
    seen = {
        "acknowledged": len(acknowledged),
        "lost": len(lost),
        "doubled": sorted(name for name, times in counted.items() if times > 1),
        "invented": sorted(set(counted) - writers.attempted()),
        "oldest_lost_seconds_before": max(lost.values(), default=0.0),
    }
    print(f"\n{'zero-loss' if zero_loss else 'archiving alone'}: {seen}")
    return seen


def test_archiving_alone_loses_only_the_last_archive_timeout_of_writes(database):
    with ExitStack() as stack:
        seen = written_then_destroyed(stack, database, zero_loss=False)
    assert seen["acknowledged"] > 50, seen  # a real load
    assert seen["doubled"] == seen["invented"] == [], seen
    # The writes after the last archived segment are lost (what the zero-loss option is for)...
    assert seen["lost"] > 0, seen
    # ...and only those.
    assert seen["oldest_lost_seconds_before"] <= ARCHIVE_TIMEOUT + MARGIN, seen


def test_a_synchronous_wal_receiver_loses_no_acknowledged_write(database):
    with ExitStack() as stack:
        seen = written_then_destroyed(stack, database, zero_loss=True)
    assert seen["acknowledged"] > 50, seen
    assert seen["doubled"] == seen["invented"] == [], seen
    assert seen["lost"] == 0, seen


def test_while_the_receiver_is_down_writes_wait_unacknowledged_and_reads_go_on(database):
    """No statement timeout ends the wait (PostgreSQL commits after the statement's timer is
    off): the write is answered only once the receiver is back, its retry meanwhile 409, and
    only what the receiver has flushed is acknowledged. Nothing of ours cancels the wait,
    whose WARNING would come with a successful COMMIT (docs/operations.md, "No write
    lost")."""
    with (
        throwaway_postgres() as cluster,
        wal_receiver(cluster) as receiver,
    ):
        migrate(cluster)
        env = server_env(cluster.url(database), DATABASE_STATEMENT_TIMEOUT_MS="1000")
        with gunicorn(API, env, "--workers", "2", stderr=subprocess.DEVNULL) as server:
            signed_in = sign_up(server.url, "unreceived")
            store = requests.post(
                f"{server.url}/store", json={"name": "Waiting"}, headers=signed_in, timeout=30
            ).json()
            headers = {**signed_in, "Idempotency-Key": "waiting"}
            item = {"name": "waiting", "price": 1, "store_id": store["id"]}
            receiver.stop()
            with pytest.raises(requests.ReadTimeout):  # past the statement timeout: no answer
                requests.post(f"{server.url}/item", json=item, headers=headers, timeout=4)
            # Its retry is told the first one still runs.
            retried = requests.post(f"{server.url}/item", json=item, headers=headers, timeout=10)
            assert retried.status_code == 409, retried.text
            assert retried.headers["Retry-After"]
            read = requests.get(f"{server.url}/store/{store['id']}", timeout=10)
            assert read.status_code == 200
            assert read.json()["items"] == []  # not committed yet, for anyone else either

            receiver.start()
            again = requests.post(f"{server.url}/item", json=item, headers=headers, timeout=30)
            assert again.status_code == 201, again.text
            assert "canceling wait for synchronous replication" not in cluster.log()
