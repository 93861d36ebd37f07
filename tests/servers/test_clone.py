"""A newcomer's clone: as root, in a directory only root may enter (`mktemp -d`'s 0700, or
under /root). What a server's own user runs or reads (postgres: Patroni's post-bootstrap, the
replica's scripts; the image's user: its commands) is copied where that user can reach it,
so the tests that run those pass there too."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tools.gunicorn_server import ROOT

# The quick tests of what servers run as their own users; the Patroni failovers run the
# same post-bootstrap as the first of them.
AS_THEIR_OWN_USERS = [
    "tests/servers/test_failover.py::test_patroni_bootstraps_the_apis_role_and_database",
    "tests/servers/test_compose.py::test_the_replica_service_copies_the_primary_and_streams_from_it",
    "tests/servers/test_compose.py::test_the_image_commands_serve_as_compose_runs_them",
]


def cloned(into: Path) -> Path:
    """This checkout's files as a clone has them, uncommitted changes included."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True, text=True,
    ).stdout.split("\0")  # fmt: skip
    clone = into / "stores-api"
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # not one deleted and not yet committed
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    return clone


@pytest.mark.skipif(os.geteuid() != 0, reason="servers run as other users only under root")
def test_the_tests_of_servers_users_pass_in_a_clone_only_root_may_enter():
    private = Path(tempfile.mkdtemp(prefix="clone-"))
    try:
        assert private.stat().st_mode & 0o777 == 0o700
        clone = cloned(private)
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "0",
             "-q", *AS_THEIR_OWN_USERS],
            cwd=clone, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        shutil.rmtree(private, ignore_errors=True)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    assert f"{len(AS_THEIR_OWN_USERS)} passed" in run.stdout
