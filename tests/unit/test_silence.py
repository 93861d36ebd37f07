"""connections.silence: the process that took its database for silent never stays so
because its probe broke."""

import logging
import time

from sqlalchemy import create_engine

from connections.silence import Silence


def test_a_probe_that_breaks_ends_the_silence(caplog):
    caplog.set_level(logging.WARNING, logger="stores.database")
    silence = Silence()
    # SQLite's connect takes no connect_timeout: the probe's connect raises TypeError, not
    # a database error, as a bug in the probe would.
    silence.connect_with = (create_engine("sqlite://").dialect, [":memory:"], {})
    silence.found_if_waited(time.monotonic() - 5)
    deadline = time.monotonic() + 5
    while silence.since is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert silence.since is None
    said = [record.getMessage() for record in caplog.records]
    assert said[0].startswith("database silent"), said
    assert "database probe failed" in said[1], said
