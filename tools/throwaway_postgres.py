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


class ThrowawayPostgres:
    """A cluster in a temporary directory, from the installed binaries (`pg_config --bindir`)."""

    def __init__(self) -> None:
        self.bindir = Path(subprocess.check_output(["pg_config", "--bindir"], text=True).strip())
        self.root = Path(tempfile.mkdtemp(prefix="throwaway-postgres-"))
        # PostgreSQL refuses to run as root.
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_owner:
            shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.server_options = [
            "listen_addresses=127.0.0.1",
            f"port={self.port}",
            f"unix_socket_directories={self.root}",
            # Nothing here outlives the run: durability only costs time.
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
        ]
        self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8")

    def _run(self, program: str, *args, check: bool = True) -> None:
        subprocess.run(
            [*self.as_owner, self.bindir / program, *args], check=check, capture_output=True
        )

    def start(self) -> None:
        options = " ".join(f"-c {option}" for option in self.server_options)
        self._run(
            "pg_ctl", "-D", self.data, "-l", self.root / "server.log", "-w", "-o", options, "start"
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        # The server may be stopped already (a test stopped it, or it never started).
        self._run("pg_ctl", "-D", self.data, "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    cluster = ThrowawayPostgres()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
