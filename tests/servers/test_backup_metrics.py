"""Operators see the backups (issue 40.6): /metrics shows the last good backup's age, the
recoverable window and archiving's failures, from a real pgBackRest repository and a real
server's pg_stat_archiver; a database that does not answer leaves /metrics fast; the alert
rules (deploy/prometheus/alerts.yml) pass promtool and fire on series of those names; `flask
backup-window` shows the window, and a restore to its latest time holds what was committed
up to it."""

import math
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from conftest import POSTGRES_DRIVERS
from prometheus_client.parser import text_string_to_metric_families
from support import JWT_SECRET

import backups.metrics
from app import create_app
from config.settings import Settings
from tools.gunicorn_server import ROOT
from tools.throwaway_backups import ThrowawayBackups, connect, throwaway_backups
from tools.throwaway_postgres import ThrowawayPostgres, throwaway_postgres

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"


@pytest.fixture
def archiving() -> Iterator[tuple[ThrowawayPostgres, ThrowawayBackups]]:
    """A server archiving into a new repository (stanza made, no backup yet); each commit's
    time stamped (track_commit_timestamp)."""
    with (
        throwaway_postgres() as cluster,
        throwaway_backups(cluster, {"track_commit_timestamp": "on"}) as backups,
    ):
        yield cluster, backups


@pytest.fixture
def often(monkeypatch):
    """pg_stat_archiver read at every scrape, a read stuck after a second: a test's minute of
    scrapes in seconds."""
    monkeypatch.setattr(backups.metrics, "ARCHIVER_READ_EVERY", 0)
    monkeypatch.setattr(backups.metrics, "ARCHIVER_STUCK", 1.0)


def write_status(backups: ThrowawayBackups, path) -> None:
    """What the backup service writes after each tick (deploy/backup/backup.sh; the compose
    test runs it): pgBackRest's info, as JSON."""
    path.write_text(backups.pgbackrest("info", "--output=json"))


def scraped(app) -> dict[str, float]:
    """The backup and archiver samples of a scrape of /metrics."""
    answer = app.test_client().get("/metrics")
    assert answer.status_code == 200
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.name.startswith(("backup_", "postgres_archiver_"))
    }


def scraped_until(app, condition, what: str, timeout: float = 30) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while not condition(seen := scraped(app)):
        assert time.monotonic() < deadline, f"{what}: {seen}"
        time.sleep(0.2)
    return seen


def archive_command(cluster: ThrowawayPostgres, command: str) -> None:
    with connect(cluster) as db:
        db.execute(f"ALTER SYSTEM SET archive_command = '{command}'")
        db.execute("SELECT pg_reload_conf()")


@pytest.mark.parametrize("driver", POSTGRES_DRIVERS)
def test_metrics_show_the_last_backup_the_window_and_archiving_failures(
    driver, archiving, often, tmp_path
):
    cluster, backups = archiving
    status = tmp_path / "info.json"
    settings = Settings(
        database_url=cluster.url(driver), backup_status_path=str(status), jwt_secret_key=JWT_SECRET
    )
    app = create_app(settings, TESTING=True)

    # No status yet (the backup service has not run): unknown, and as old as can be.
    seen = scraped(app)
    assert seen["backup_status_readable"] == 0
    assert seen["backup_last_good_age_seconds"] == math.inf
    # A repository without a backup: no window, still as old as can be.
    write_status(backups, status)
    seen = scraped(app)
    assert seen["backup_status_readable"] == 1
    assert seen["backup_last_good_age_seconds"] == math.inf
    assert "backup_recoverable_earliest_timestamp_seconds" not in seen

    backups.backup("full")
    write_status(backups, status)
    (stopped,) = [backup["timestamp"]["stop"] for backup in backups.info()[0]["backup"]]
    seen = scraped(app)
    assert 0 <= seen["backup_last_good_age_seconds"] <= time.time() - stopped + 1
    assert seen["backup_recoverable_earliest_timestamp_seconds"] == stopped + 1

    # Archiving works: the window reaches the last segment archived.
    backups.check()
    seen = scraped_until(app, lambda seen: seen.get("postgres_archiver_archived_total", 0) > 0,
                         "a segment archived")  # fmt: skip
    assert seen["postgres_archiver_up"] == 1
    archived_at = seen["postgres_archiver_last_archived_timestamp_seconds"]
    assert time.time() - 60 < archived_at <= time.time()
    assert seen["backup_recoverable_latest_timestamp_seconds"] == archived_at
    assert seen["postgres_archiver_failed_total"] == 0
    assert seen["postgres_archiver_last_failed_timestamp_seconds"] == 0

    # Archiving fails (the repository unreachable, say): failing now.
    archive_command(cluster, "false")
    try:
        with connect(cluster) as db:
            db.execute("CREATE TABLE written (id int)")
            db.execute("SELECT pg_switch_wal()")
        failing = scraped_until(
            app,
            lambda seen: (
                seen["postgres_archiver_last_failed_timestamp_seconds"]
                > seen["postgres_archiver_last_archived_timestamp_seconds"]
            ),
            "archiving failing",
        )
        assert failing["postgres_archiver_failed_total"] > 0
    finally:
        archive_command(cluster, backups.archive_command())
    # Once it works again, it no longer is.
    backups.check()
    scraped_until(
        app,
        lambda seen: (
            seen["postgres_archiver_last_archived_timestamp_seconds"]
            > seen["postgres_archiver_last_failed_timestamp_seconds"]
        ),
        "archiving working again",
    )

    # Every name the alert rules use is one /metrics shows (the verify's, once the backup
    # service has verified: the compose test's loop writes it).
    status.with_name("info.json.verify").write_text("ok\n")
    expressions = [rule["expr"] for group in yaml.safe_load(ALERTS.read_text())["groups"]
                   for rule in group["rules"]]  # fmt: skip
    used = set(re.findall(r"\b(?:backup|postgres_archiver)_\w+", " ".join(expressions)))
    assert used
    assert used <= set(scraped(app)), used - set(scraped(app))


def test_archiving_that_hangs_shows_as_segments_waiting(archiving, often, tmp_path):
    """archive-push hanging (a repository mount that does not answer) fails nothing: the
    segments it leaves waiting tell (ArchivingStuck)."""
    cluster, backups = archiving
    settings = Settings(database_url=cluster.url(), jwt_secret_key=JWT_SECRET)
    app = create_app(settings, TESTING=True)
    backups.check()
    scraped_until(app, lambda seen: seen.get("postgres_archiver_segments_waiting") == 0,
                  "archiving keeping up")  # fmt: skip
    hang = "sleep 3599.25"  # one of its own, to end it after
    archive_command(cluster, hang)
    try:
        with connect(cluster) as db:
            for n in range(4):
                db.execute(f"CREATE TABLE written_{n} (id int)")
                db.execute("SELECT pg_switch_wal()")
        stuck = scraped_until(
            app, lambda seen: seen["postgres_archiver_segments_waiting"] >= 3, "segments waiting"
        )
        assert stuck["postgres_archiver_failed_total"] == 0
    finally:
        archive_command(cluster, backups.archive_command())
        subprocess.run(["pkill", "-f", hang])
    scraped_until(app, lambda seen: seen["postgres_archiver_segments_waiting"] == 0,
                  "archiving caught up")  # fmt: skip


@contextmanager
def frozen(cluster: ThrowawayPostgres) -> Iterator[None]:
    """Every process of the server stopped (SIGSTOP): it accepts connections and answers
    nothing, as a server behind a silent network."""
    postmaster = cluster.postmaster_pid()
    children = subprocess.run(
        ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=True
    ).stdout.split()
    pids = [postmaster, *map(int, children)]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def test_a_database_that_does_not_answer_leaves_metrics_fast(archiving, often, tmp_path):
    cluster, backups = archiving
    settings = Settings(database_url=cluster.url(), jwt_secret_key=JWT_SECRET)
    app = create_app(settings, TESTING=True)
    backups.check()
    scraped_until(app, lambda seen: seen.get("postgres_archiver_up") == 1, "the archiver read")
    with frozen(cluster):
        deadline = time.monotonic() + 30
        while True:
            started = time.monotonic()
            seen = scraped(app)
            assert time.monotonic() - started < 1, "a scrape waited for the database"
            if seen["postgres_archiver_up"] == 0:
                break
            assert time.monotonic() < deadline, seen
            time.sleep(0.2)
        # What it knew last is still shown.
        assert seen["postgres_archiver_archived_total"] > 0
    scraped_until(app, lambda seen: seen["postgres_archiver_up"] == 1, "the archiver read again")


ALERT_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # 25 h 50 min old at minute 0, a minute older each minute: over 26 h from minute 11.
      - series: 'backup_last_good_age_seconds{{job="api", instance="a"}}'
        values: '93000+60x40'
      - series: 'backup_status_readable{{job="api", instance="a"}}'
        values: '1x40'
      - series: 'postgres_archiver_up{{job="api", instance="a"}}'
        values: '1x40'
      # Archived last at 1000 until minute 20, then at 3000; failing from minute 10 (at 2000).
      - series: 'postgres_archiver_last_archived_timestamp_seconds{{job="api", instance="a"}}'
        values: '1000x19 3000x20'
      - series: 'postgres_archiver_last_failed_timestamp_seconds{{job="api", instance="a"}}'
        values: '0x9 2000x30'
      # Segments left waiting from minute 5 (archive-push hanging).
      - series: 'postgres_archiver_segments_waiting{{job="api", instance="a"}}'
        values: '0x4 5x35'
    alert_rule_test:
      - {{eval_time: 14m, alertname: ArchivingStuck, exp_alerts: []}}
      - eval_time: 16m
        alertname: ArchivingStuck
        exp_alerts:
          - exp_labels: {{severity: critical, job: api}}
            exp_annotations: {stuck}
      - {{eval_time: 9m, alertname: ArchivingFailing, exp_alerts: []}}
      - {{eval_time: 11m, alertname: ArchivingFailing, exp_alerts: []}}
      - eval_time: 15m
        alertname: ArchivingFailing
        exp_alerts:
          - exp_labels: {{severity: critical, job: api}}
            exp_annotations: {archiving}
      - {{eval_time: 25m, alertname: ArchivingFailing, exp_alerts: []}}
      - {{eval_time: 14m, alertname: BackupTooOld, exp_alerts: []}}
      - eval_time: 17m
        alertname: BackupTooOld
        exp_alerts:
          - exp_labels: {{severity: critical, job: api}}
            exp_annotations: {old}
      - {{eval_time: 40m, alertname: BackupStatusUnknown, exp_alerts: []}}
      - {{eval_time: 40m, alertname: BackupRepositoryDamaged, exp_alerts: []}}
  - interval: 1m
    input_series:
      # The last verify found the repository whole, then, from minute 5, damaged.
      - series: 'backup_repository_verified{{job="api", instance="a"}}'
        values: '1x4 0x10'
    alert_rule_test:
      - {{eval_time: 4m, alertname: BackupRepositoryDamaged, exp_alerts: []}}
      - eval_time: 5m
        alertname: BackupRepositoryDamaged
        exp_alerts:
          - exp_labels: {{severity: critical, job: api}}
            exp_annotations: {damaged}
  - interval: 1m
    input_series:
      # The status unreadable from minute 5: the age unknown, +Inf.
      - series: 'backup_status_readable{{job="api", instance="a"}}'
        values: '1x4 0x30'
      - series: 'backup_last_good_age_seconds{{job="api", instance="a"}}'
        values: '600x4 {infinite}'
      - series: 'postgres_archiver_up{{job="api", instance="a"}}'
        values: '1x40'
    alert_rule_test:
      - {{eval_time: 15m, alertname: BackupStatusUnknown, exp_alerts: []}}
      - eval_time: 20m
        alertname: BackupStatusUnknown
        exp_alerts:
          - exp_labels: {{severity: warning, job: api}}
            exp_annotations: {unknown}
      - {{eval_time: 30m, alertname: BackupTooOld, exp_alerts: []}}
      - {{eval_time: 30m, alertname: BackupNone, exp_alerts: []}}
  - interval: 1m
    input_series:
      # A new deployment: the status read, no backup in it for 28 hours.
      - series: 'backup_status_readable{{job="api", instance="a"}}'
        values: '1x1680'
      - series: 'backup_last_good_age_seconds{{job="api", instance="a"}}'
        values: '{infinite}'
    alert_rule_test:
      - {{eval_time: 5h, alertname: BackupTooOld, exp_alerts: []}}
      - {{eval_time: 25h, alertname: BackupNone, exp_alerts: []}}
      - eval_time: 27h
        alertname: BackupNone
        exp_alerts:
          - exp_labels: {{severity: critical, job: api}}
            exp_annotations: {none}
      - {{eval_time: 27h, alertname: BackupTooOld, exp_alerts: []}}
"""


def test_the_alert_rules_are_valid_and_fire_on_an_old_backup_and_failing_archiving(tmp_path):
    """And not BackupTooOld when the status is unreadable (BackupStatusUnknown's case) or
    lists no backup yet (BackupNone's, after as long)."""
    checked = subprocess.run(["promtool", "check", "rules", ALERTS], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    annotations = {
        rule["alert"]: rule["annotations"]
        for group in yaml.safe_load(ALERTS.read_text())["groups"]
        for rule in group["rules"]
    }

    def expected(alert: str, **values: str) -> str:
        """The alert's annotations as promtool renders them, in YAML's flow style."""
        rendered = {
            name: re.sub(
                r"\{\{ \$value \| humanizeDuration \}\}", values.get("age", ""), text
            ).replace("{{ $value }}", values.get("value", ""))
            for name, text in annotations[alert].items()
        }
        return yaml.safe_dump(rendered, default_flow_style=True, width=10_000).strip()

    tests = tmp_path / "alerts_test.yml"
    tests.write_text(
        ALERT_TESTS.format(
            rules=ALERTS,
            archiving=expected("ArchivingFailing"),
            # 93000 + 17 * 60 s
            old=expected("BackupTooOld", age="1d 2h 7m 0s"),
            unknown=expected("BackupStatusUnknown"),
            stuck=expected("ArchivingStuck", value="5"),
            damaged=expected("BackupRepositoryDamaged"),
            none=expected("BackupNone"),
            # 28 hours of samples (promtool's "x1680" takes no Inf).
            infinite=" ".join(["+Inf"] * 1681),
        )
    )
    run = subprocess.run(["promtool", "test", "rules", tests], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_backup_window_shows_what_a_restore_reaches(archiving):
    cluster, backups = archiving
    with connect(cluster) as db:
        db.execute("CREATE TABLE rows (id serial PRIMARY KEY)")
    backups.backup("full")
    (stopped,) = [backup["timestamp"]["stop"] for backup in backups.info()[0]["backup"]]
    time.sleep(max(0, stopped + 1 - time.time()))
    committed = {}
    with connect(cluster) as db:
        for _ in range(3):
            (row,) = db.execute("INSERT INTO rows DEFAULT VALUES RETURNING id").fetchone()
            committed[row] = db.execute(
                "SELECT pg_xact_commit_timestamp(xmin) FROM rows WHERE id = %s", (row,)
            ).fetchone()[0]
            time.sleep(0.05)
    backups.check()  # every commit archived

    app = create_app(Settings(jwt_secret_key=JWT_SECRET), TESTING=True)
    environment = {"PGBACKREST_CONFIG": str(backups.config), "PGBACKREST_STANZA": "main"}
    result = app.test_cli_runner().invoke(args=["backup-window"], env=environment)
    assert result.exit_code == 0, result.output
    times = dict(re.findall(r"^(earliest|latest|last good backup): +(\S+)", result.output, re.M))
    earliest, latest = (datetime.fromisoformat(times[each]) for each in ("earliest", "latest"))
    assert earliest == datetime.fromtimestamp(stopped + 1, UTC)
    assert times["last good backup"] == datetime.fromtimestamp(stopped, UTC).isoformat()
    # Just before the last commit archived: ours, or a later one of the server's own.
    assert max(committed.values()) - timedelta(microseconds=1) <= latest < datetime.now(UTC)

    # The latest time is one a restore reaches, holding every commit up to it.
    with backups.restore(latest) as restored, connect(restored) as db:
        present = {row for (row,) in db.execute("SELECT id FROM rows")}
    assert present == {row for row, at in committed.items() if at <= latest}
    assert present


def test_backup_window_finds_the_last_commit_behind_many_segments_without_one(archiving):
    """Each check (and backup) switches to a new segment: an idle database's newest segments
    hold no commit, and the search goes further back, to the commit."""
    cluster, backups = archiving
    backups.backup("full")
    (stopped,) = [backup["timestamp"]["stop"] for backup in backups.info()[0]["backup"]]
    time.sleep(max(0, stopped + 1 - time.time()))  # the window's start
    with connect(cluster) as db:
        db.execute("CREATE TABLE rows (id serial PRIMARY KEY)")
        (row,) = db.execute("INSERT INTO rows DEFAULT VALUES RETURNING xmin").fetchone()
        (committed,) = db.execute("SELECT pg_xact_commit_timestamp(%s)", (row,)).fetchone()
    for _ in range(12):
        backups.check()

    app = create_app(Settings(jwt_secret_key=JWT_SECRET), TESTING=True)
    environment = {"PGBACKREST_CONFIG": str(backups.config), "PGBACKREST_STANZA": "main"}
    result = app.test_cli_runner().invoke(args=["backup-window"], env=environment)
    assert result.exit_code == 0, result.output
    (latest,) = re.findall(r"^latest: +(\S+)", result.output, re.M)
    assert datetime.fromisoformat(latest) == committed - timedelta(microseconds=1)
