"""A silent partition (packets to and from the database dropped, nothing answering) holds no
request past the statement timeout + 5 s, answers 503 meanwhile, and once the network heals,
requests succeed again within 3 s; nothing acknowledged is lost. Acted out in a network
namespace of its own (support/partition.py), directly and through PgBouncer."""

import json
import os
import subprocess
import sys

import pytest

from tools.gunicorn_server import ROOT


@pytest.mark.parametrize(
    ("driver", "via"), [("psycopg2", "direct"), ("psycopg", "direct"), ("psycopg2", "pgbouncer")]
)
def test_a_silent_partition_holds_no_request_and_heals_within_3_s(driver, via):
    run = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "support.partition", driver, via],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    seen = json.loads(run.stdout)
    partitioned_at, healed_at = seen["partitioned_at"], seen["healed_at"]
    answers = seen["answers"]

    during = [a for a in answers if a["ended"] > partitioned_at and a["started"] < healed_at]
    assert {a["status"] for a in during} <= {200, 201, 503}
    assert any(a["status"] == 503 for a in during)  # the partition was real
    longest = max(a["ended"] - a["started"] for a in during)
    assert longest <= seen["statement_timeout_s"] + 5, longest

    # Requests begun once the network healed succeed within 3 s, and from then on, all do.
    after = [a for a in answers if a["started"] >= healed_at]
    first_success = min(a["ended"] for a in after if a["status"] in (200, 201))
    assert first_success - healed_at <= 3, first_success - healed_at
    assert all(a["status"] in (200, 201) for a in after if a["started"] >= healed_at + 3)

    assert seen["found"], "no write was acknowledged"
    assert set(seen["found"]) == {200}  # every 201 is there
