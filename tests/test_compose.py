"""docker-compose.yml is valid and wires the services as the README says."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose_command() -> list[str]:
    if shutil.which("docker") is None:
        pytest.skip("no docker client on this machine")
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    # .ci/run installs Debian's docker-compose where the plugin is missing.
    assert shutil.which("docker-compose"), "neither `docker compose` nor `docker-compose`"
    return ["docker-compose"]


def compose_config(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*compose_command(), "-f", "docker-compose.yml", "config"],
        cwd=ROOT, capture_output=True, text=True,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", **env},
    )  # fmt: skip


def test_compose_file_validates_and_wires_the_services():
    result = compose_config(JWT_SECRET_KEY="x" * 64)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    database, redis, api = services["db"], services["redis"], services["api"]

    assert "pg_isready" in " ".join(database["healthcheck"]["test"])
    assert "pgdata" in config["volumes"]
    assert "ping" in redis["healthcheck"]["test"]
    assert api["depends_on"]["db"]["condition"] == "service_healthy"
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    assert api["environment"]["DATABASE_URL"].startswith("postgresql://")
    assert api["environment"]["RATELIMIT_STORAGE_URI"] == "redis://redis:6379"
    assert api["environment"]["JWT_SECRET_KEY"] == "x" * 64
    assert "/health" in " ".join(api["healthcheck"]["test"])


def test_compose_refuses_to_run_without_a_token_secret():
    result = compose_config()
    assert result.returncode != 0
    assert "JWT_SECRET_KEY" in result.stderr


def test_image_migrates_then_execs_gunicorn_and_keeps_secrets_out():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "flask db upgrade && exec gunicorn" in dockerfile
    assert ".env" in (ROOT / ".dockerignore").read_text().split()
