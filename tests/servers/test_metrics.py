"""Operators see the service: Debian's Prometheus scrapes /metrics of the API under gunicorn
(4 workers, whose counts /metrics adds up), with compose's prometheus.yml, and reads back
the traffic the test sent."""

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
import yaml
from support.http import server_env

from tools.gunicorn_server import API, gunicorn, http_server_on_a_free_port

PROMETHEUS_YML = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "prometheus.yml"


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


def test_the_metrics_name_routes_by_their_template(client):
    client.get("/store/123456")
    client.get("/no/such/route")
    exposed = client.get("/metrics")
    assert exposed.status_code == 200
    assert exposed.mimetype == "text/plain"
    text = exposed.get_data(as_text=True)
    assert 'route="/store/{store_id}",status="404"' in text
    assert 'route="unmatched"' in text
    assert "/store/123456" not in text  # never the raw path: bounded label values
