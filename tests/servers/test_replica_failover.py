"""A hot standby through a failover as a cluster manager makes one, straight to PostgreSQL
only: DATABASE_URL names both hosts, and a PgBouncer pool has one server."""

import threading
import time
from contextlib import ExitStack

import pytest
from support.replication import Replication, reads_served

from app import create_app
from config.settings import Settings
from tools.throwaway_patroni import wait_for
from tools.throwaway_postgres import throwaway_postgres


@pytest.mark.one_driver
def test_a_standby_that_follows_a_new_primary_is_never_refused(database):
    """A failover as a cluster manager makes one: the primary stops, another standby of it is
    promoted (timeline 2), DATABASE_URL's hosts find it, and the API's standby follows it. The
    standby's last restartpoint still names timeline 1: it is never refused on the way, and
    serves again once caught up with the new primary."""
    with ExitStack() as stack:
        own = Replication(stack)
        candidate = stack.enter_context(throwaway_postgres(standby_of=own.primary))
        hosts = f"host=127.0.0.1:{own.primary.port}&host=127.0.0.1:{candidate.port}"
        settings = Settings(
            database_url=f"postgresql+{database}://postgres@/postgres?{hosts}"
            "&target_session_attrs=read-write",
            database_replica_urls=own.url(own.standby, database),
        )
        app = create_app(settings, TESTING=True)
        client = app.test_client(use_cookies=False)
        replica = app.extensions["replication"].replicas.all[0]
        own.on(own.primary, "INSERT INTO stores (name) VALUES ('Before')")
        served = reads_served("replica1")
        wait_for(lambda: client.get("/store").status_code == 200
                 and reads_served("replica1") > served, "reads on the standby", 15)  # fmt: skip
        verdicts, watching = set(), threading.Event()

        def watch() -> None:
            while not watching.is_set():
                verdicts.add(replica.refused)
                time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            own.primary.stop()
            candidate.promote()
            follow = f"host=127.0.0.1 port={candidate.port} user=postgres"
            own.on(own.standby, f"ALTER SYSTEM SET primary_conninfo = '{follow}'")
            own.on(own.standby, "SELECT pg_reload_conf()")
            own.on(candidate, "INSERT INTO stores (name) VALUES ('After')")
            served = reads_served("replica1")
            wait_for(lambda: "After" in {store["name"] for store in client.get("/store").get_json()}
                     and reads_served("replica1") > served and replica.serves(30, time.monotonic())
                     and own.on(own.standby, "SELECT received_tli FROM pg_stat_wal_receiver")
                     == [(2,)], "reads of the new primary's rows on the standby", 30)  # fmt: skip
        finally:
            watching.set()
            watcher.join()
        assert verdicts == {None}
