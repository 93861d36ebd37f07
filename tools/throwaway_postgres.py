"""A PostgreSQL cluster of its own for tests and benchmarks, gone when they end."""

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def throwaway_postgres(*settings: str) -> Iterator[str]:
    """Start a cluster from the installed binaries and yield its SQLAlchemy URL.

    `settings` are extra `name=value` server settings.
    """
    bindir = Path(subprocess.check_output(["pg_config", "--bindir"], text=True).strip())
    root = Path(tempfile.mkdtemp(prefix="throwaway-postgres-"))
    # PostgreSQL refuses to run as root.
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_owner:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    server_options = [
        "listen_addresses=127.0.0.1",
        f"port={port}",
        f"unix_socket_directories={root}",
        # Nothing here outlives the run: durability only costs time.
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
        *settings,
    ]

    def pg_ctl(*args: str) -> None:
        subprocess.run(
            [*as_owner, bindir / "pg_ctl", "-D", data, *args], check=True, capture_output=True
        )

    subprocess.run(
        [*as_owner, bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    pg_ctl(
        "-l",
        str(root / "server.log"),
        "-w",
        "-o",
        " ".join(f"-c {o}" for o in server_options),
        "start",
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        pg_ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
