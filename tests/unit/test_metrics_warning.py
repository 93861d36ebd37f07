"""The warning that /metrics counts one gunicorn worker is for gunicorn's workers only."""

import os
import subprocess
import sys

from tools.gunicorn_server import ROOT

BUILD_AN_APP = "from app import create_app; create_app()"


def test_an_app_outside_gunicorn_does_not_warn_of_gunicorn_workers():
    # app.py imports parts of gunicorn (its parse errors): only its arbiter means a worker.
    environment = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    environment.update(DATABASE_URL="sqlite://", JWT_SECRET_KEY="s" * 32)
    run = subprocess.run(
        [sys.executable, "-c", BUILD_AN_APP],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "gunicorn worker" not in run.stderr
