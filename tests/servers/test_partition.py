"""A silent partition (packets to and from the database dropped, nothing answering) holds no
request past BOUND_SECONDS, answers 503 meanwhile, and once the network heals, requests
succeed again within 3 s; nothing acknowledged is lost. Acted out in a network namespace of
its own (support/partition.py), directly and through PgBouncer, under more clients than
gunicorn has workers, as the issue's report did: a request's time is also its wait for a
worker that waits on the database."""

import json
import os
import subprocess
import sys

import pytest

from tools.gunicorn_server import ROOT

# docs/operations.md ("A silent network"): the longest wait that finds the silence (a
# statement on a pooled connection: tcp_user_timeout, 4 s, as the kernel's timers round it; a
# connect: 3 s; through PgBouncer, its query_wait_timeout: 5 s), paid once per process
# (connections/silence.py), plus 3 s for a request's work and a loaded machine.
BOUND_SECONDS = 8


def in_a_partition(*arguments: str) -> dict:
    """What support/partition.py's clients saw, run with `arguments` in a network namespace."""
    run = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "support.partition", *arguments],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout)


@pytest.mark.parametrize(
    ("driver", "via"), [("psycopg2", "direct"), ("psycopg", "direct"), ("psycopg2", "pgbouncer")]
)
def test_a_silent_partition_holds_no_request_and_heals_within_3_s(driver, via):
    seen = in_a_partition(driver, via)
    partitioned_at, healed_at = seen["partitioned_at"], seen["healed_at"]
    answers = seen["answers"]
    log = seen["server_log"][-4000:]

    during = [a for a in answers if a["ended"] > partitioned_at and a["started"] < healed_at]
    assert any(a["status"] == 503 for a in during)  # the partition was real
    slowest = max(during, key=lambda a: a["ended"] - a["started"])
    assert slowest["ended"] - slowest["started"] <= BOUND_SECONDS, (slowest, partitioned_at, log)
    retried = set()
    for each in sorted(answers, key=lambda a: a["started"]):
        # A retried key whose first request's transaction the server still holds open (it
        # notices the lost client only seconds after the healing) is answered 409.
        assert each["status"] in (200, 201, 503) or each["key"] in retried, each
        if each["status"] in (409, 503):
            assert each["retry_after"], each
            assert each["error_shape"] == ["code", "message", "status"], each
            retried.add(each["key"])

    # Requests begun once the network healed succeed within 3 s, and from then on, all do
    # (but a 409 for a retried key, as above).
    after = [a for a in answers if a["started"] >= healed_at]
    first_success = min(a["ended"] for a in after if a["status"] in (200, 201))
    assert first_success - healed_at <= 3, first_success - healed_at
    assert all(a["status"] in (200, 201, 409) for a in after if a["started"] >= healed_at + 3)

    # Every write answered 201 is there, once, whatever its key's earlier tries got.
    assert seen["acknowledged"], "no write was acknowledged"
    assert set(seen["acknowledged"]) <= set(seen["stored"])
    assert set(seen["stores_by_name"].values()) == {1}


@pytest.mark.parametrize("driver", ["psycopg2", "psycopg"])
def test_a_silent_server_costs_one_wait_per_process(driver):
    """An idle pooled connection's ping finds the silence (tcp_user_timeout), and the read
    answers 503 then, without connecting again (before: then a connect_timeout more, 7.2 s);
    the next read answers 503 at once (before: its own connect_timeout, 3 s); once the
    network heals, a probe finds the server and reads succeed again."""
    seen = in_a_partition("lone", driver)
    first, second = seen["first"], seen["second"]
    assert first["status"] == second["status"] == 503
    assert first["seconds"] <= 5, first
    assert second["seconds"] <= 0.5, second
    assert seen["healed_after"] <= 3, seen


def test_a_silent_replica_is_left_out_with_no_error_and_used_again_once_healed():
    """The standby behind a silent partition: every read still answers 200 (a read caught on
    it is answered again from the primary), none waits past DATABASE_REPLICA_TIMEOUT_SECONDS
    (our own clock, before tcp_user_timeout), the standby serves nothing meanwhile, and serves
    again once the network heals."""
    run = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "support.replica_partition"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    seen = json.loads(run.stdout)
    answers = seen["answers"]
    assert {a["status"] for a in answers} == {200}
    during = [a for a in answers if seen["partitioned_at"] <= a["started"] < seen["healed_at"]]
    # DATABASE_REPLICA_TIMEOUT_SECONDS (2 s) on the standby, then the read again on the
    # primary; a second's margin for a loaded machine.
    assert max(a["ended"] - a["started"] for a in during) <= 3
    # Once found silent, the standby is left out: reads go on at the primary's pace.
    assert len(during) > 100
    before, during_partition, after = seen["served"]
    assert during_partition - before <= 2  # the reads caught on it, at most, counted there
    assert after > during_partition
