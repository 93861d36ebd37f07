"""The backup service's status file as /metrics reads it (backups/metrics.py): whatever the
file holds, the figures say "unknown", never a failed scrape."""

import json
import math

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from backups.metrics import BackupStatus

GOOD = [
    {
        "name": "stores",
        "status": {"code": 0, "message": "ok"},
        "backup": [
            {
                "timestamp": {"start": 1796360000, "stop": 1796360005},
                "archive": {
                    "start": "000000010000000000000002",
                    "stop": "000000010000000000000002",
                },
            }
        ],
        "archive": [
            {"id": "15-1", "min": "000000010000000000000001", "max": "000000010000000000000004"}
        ],
    }
]
NESTED = "[" * 100_000 + "]" * 100_000


def figures(path) -> dict[str, float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BackupStatus(path))
    text = generate_latest(registry).decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_status_file_gives_the_last_backup_and_the_windows_start(tmp_path):
    path = tmp_path / "status.json"
    path.write_text(json.dumps(GOOD))
    shown = figures(path)
    assert shown["backup_status_readable"] == 1
    assert shown["backup_recoverable_earliest_timestamp_seconds"] == 1796360006
    assert 0 < shown["backup_last_good_age_seconds"] < math.inf


@pytest.mark.parametrize(
    "content",
    [
        json.dumps([{**GOOD[0], "backup": [{"timestamp": {"stop": stop}}]}])
        for stop in ("yesterday", None, 1e20, -1e13, [1])
    ]
    + [
        json.dumps([{**GOOD[0], "backup": ["x"]}]),
        json.dumps([None]),
        json.dumps([["a"]]),
        json.dumps([{**GOOD[0], "archive": [1]}]),
        json.dumps([]),
        NESTED,
        "not json",
        "",
    ],
)
def test_a_status_file_of_any_other_shape_is_unknown_not_a_failed_scrape(tmp_path, content):
    path = tmp_path / "status.json"
    path.write_text(content)
    shown = figures(path)
    assert shown["backup_status_readable"] == 0
    assert shown["backup_last_good_age_seconds"] == math.inf
    assert "backup_recoverable_earliest_timestamp_seconds" not in shown
