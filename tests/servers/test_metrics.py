"""Operators see the service: Debian's Prometheus scrapes /metrics of the API under gunicorn
(4 workers, whose counts /metrics adds up), with compose's prometheus.yml, and reads back
the traffic the test sent. A plain `gunicorn` started in the project's directory adds up its
workers too; one that did not read gunicorn.conf.py says its counts are one worker's."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import yaml
from support.http import metric_total, run_together, server_env

from tools.gunicorn_server import (
    API,
    ROOT,
    gunicorn,
    http_server_on_a_free_port,
    serving_as_written,
)

# What the workers count, and how gunicorn's workers add up and Prometheus reads it back, no
# driver changes: one is enough. The workers' connections-in-use back at 0 with each driver,
# through PgBouncer and on SQLite too: tests/servers/test_retries_over_http.py.
pytestmark = pytest.mark.one_driver

PROMETHEUS_YML = ROOT / "deploy" / "prometheus" / "prometheus.yml"


@contextmanager
def throwaway_prometheus(target: str) -> Iterator[str]:
    """Debian's Prometheus with compose's configuration, scraping `target` (host:port)
    every second instead of the instances compose's DNS names; yields its URL."""
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"]["scrape_interval"] = "1s"
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "api")
    config["scrape_configs"] = [job]
    del job["dns_sd_configs"]
    job["static_configs"] = [{"targets": [target]}]
    root = Path(tempfile.mkdtemp(prefix="throwaway-prometheus-"))
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(PROMETHEUS_YML.parent / "alerts.yml", root)  # its rule_files, beside it

    def start_on(port: int) -> subprocess.Popen:
        return subprocess.Popen(
            ["prometheus", f"--config.file={root / 'prometheus.yml'}",
             f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=(root / "prometheus.log").open("w"),
        )  # fmt: skip

    try:
        with http_server_on_a_free_port(start_on, "/-/ready", timeout=60) as url:
            yield url
    finally:
        shutil.rmtree(root, ignore_errors=True)


def query(prometheus: str, expression: str) -> float | None:
    """The value of `expression` now; None while there is none (or Prometheus is not
    ready yet: it answers 503 until it has replayed its storage)."""
    answer = requests.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=10)
    if answer.status_code != 200:
        return None
    results = answer.json()["data"]["result"]
    return float(results[0]["value"][1]) if results else None


def test_prometheus_reads_back_what_every_worker_counted(database_url, http):
    with gunicorn(API, server_env(database_url), "--workers", "4") as api:
        store = http.post(f"{api.url}/store", json={"name": "Seen"}, timeout=30).json()
        for _ in range(40):
            assert requests.get(f"{api.url}/store/{store['id']}", timeout=30).status_code == 200
        for _ in range(7):
            assert requests.get(f"{api.url}/store/999999", timeout=30).status_code == 404
        for _ in range(5):
            assert requests.post(f"{api.url}/store", json={}, timeout=30).status_code == 401
        wrong = {"username": "nobody", "password": "wrong password"}
        logins = [requests.post(f"{api.url}/login", json=wrong, timeout=30) for _ in range(6)]
        assert [login.status_code for login in logins] == [401] * 5 + [429]

        expected = {
            'sum(http_requests_total{method="GET",route="/store/{store_id}",status="200"})': 40,
            'sum(http_requests_total{method="GET",route="/store/{store_id}",status="404"})': 7,
            'sum(http_requests_total{method="POST",route="/store",status="401"})': 5,
            'sum(http_requests_total{method="POST",route="/login",status="429"})': 1,
            'sum(http_request_duration_seconds_count{route="/store/{store_id}"})': 47,
            'sum(throttle_refusals_total{limit="login-account-client"})': 1,
            # Buckets that tell 1 ms from 2, 5, 10, 20, 50 and 100 ms apart.
            'count(count by (le) (http_request_duration_seconds_bucket{le=~"0.001|0.002|0.005'
            '|0.01|0.02|0.05|0.1"}))': 7,
            # No request holds a connection between requests.
            "sum(db_connections_in_use)": 0,
        }
        with throwaway_prometheus(api.url.removeprefix("http://")) as prometheus:
            deadline = time.monotonic() + 60
            while (seen := {e: query(prometheus, e) for e in expected}) != expected:
                assert time.monotonic() < deadline, seen
                time.sleep(0.5)
            # It loaded the alert rules prometheus.yml names (deploy/prometheus/alerts.yml).
            rules = requests.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]
            alerts = [rule["name"] for group in rules["groups"] for rule in group["rules"]]
            assert {"BackupTooOld", "ArchivingFailing"} <= set(alerts), rules


def test_the_metrics_name_routes_by_their_template(client):
    client.get("/store/123456")
    client.get("/no/such/route")
    exposed = client.get("/metrics")
    assert exposed.status_code == 200
    assert exposed.mimetype == "text/plain"
    # Prometheus's own, once: its version and one charset.
    assert exposed.headers["Content-Type"].count("charset") == 1
    text = exposed.get_data(as_text=True)
    assert 'route="/store/{store_id}",status="404"' in text
    assert 'route="unmatched"' in text
    assert "/store/123456" not in text  # never the raw path: bounded label values


def plain_gunicorn(database_url: str, *options: str, variables: dict | None = None, **popen):
    """`gunicorn -w 4 'app:create_app()'` as gunicorn's own docs start an app, from the
    project's directory, with `options` before the app and these environment `variables`."""
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        **server_env(database_url, **(variables or {})),
    }
    return serving_as_written(["gunicorn", "-w", "4", *options, API], env, **popen)


@pytest.mark.parametrize("named_directory", [False, True])
def test_a_plain_gunicorn_in_the_project_directory_adds_up_its_workers(
    database_url, tmp_path, named_directory
):
    # A directory the environment names, not there yet, is made.
    samples = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "not" / "yet")}
    with plain_gunicorn(database_url, variables=samples if named_directory else None) as (url, _):
        # At once, from several clients: the 4 workers share them.
        answers = run_together(
            6, lambda _: [requests.get(f"{url}/store/999999", timeout=30) for _ in range(10)]
        )
        assert [a.status_code for each in answers for a in each] == [404] * 60
        exposed = requests.get(f"{url}/metrics", timeout=30).text
    counted = metric_total(exposed, "http_requests_total", route="/store/{store_id}", status="404")
    assert counted == 60
    assert "metrics_process_only" not in exposed


def test_a_scrape_adds_up_the_workers_while_one_is_making_its_file(database_url, tmp_path):
    # A worker makes its file of samples, then sizes it: a scrape in between (or ever after,
    # if that worker died there) saw an empty file and answered 500 (client_python#1199).
    samples = tmp_path / "samples"
    with plain_gunicorn(database_url, variables={"PROMETHEUS_MULTIPROC_DIR": str(samples)}) as (
        url,
        _,
    ):
        (samples / "counter_4194304.db").touch()
        assert requests.get(f"{url}/store/999999", timeout=30).status_code == 404
        scraped = requests.get(f"{url}/metrics", timeout=30)
    assert scraped.status_code == 200
    assert metric_total(scraped.text, "http_requests_total", route="/store/{store_id}") == 1


def test_a_gunicorn_without_its_configuration_says_it_counts_one_worker(database_url, tmp_path):
    log = tmp_path / "gunicorn.log"
    with plain_gunicorn(database_url, "--config", "/dev/null", stderr=log.open("w")) as (url, _):
        exposed = requests.get(f"{url}/metrics", timeout=30).text
    assert metric_total(exposed, "metrics_process_only") == 1
    # Each worker said so as it started.
    assert log.read_text().count("/metrics counts this gunicorn worker") == 4
