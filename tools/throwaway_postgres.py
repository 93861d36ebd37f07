"""Servers of their own for tests and benchmarks, gone when they end: a PostgreSQL
cluster from the installed binaries, and PgBouncer in front of it."""

import configparser
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import URL

# PostgreSQL and PgBouncer refuse to run as root.
AS_POSTGRES = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def on_a_free_port(start: Callable[[int], None], attempts: int = 5) -> int:
    """Start a server that binds its port itself, on a free one: the port may be taken
    between the check and the bind, so a start that fails is retried on another port."""
    for attempt in range(attempts):
        port = free_port()
        try:
            start(port)
            return port
        except subprocess.CalledProcessError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def owned_temp_dir(prefix: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    if AS_POSTGRES:
        shutil.chown(root, "postgres", "postgres")
    return root


class ThrowawayPostgres:
    """A cluster in a temporary directory, from the installed binaries (`pg_config --bindir`):
    a new one, or a hot standby of a running one (`standby_of`), streaming from it, copied
    with `pg_basebackup -R -X stream` (initdb's trust rules let loopback replicate), or
    one whose data directory `data_from` fills (a restore from a backup).

    `durable`: flushed and committed as deployed (fsync, synchronous commits, full page
    writes), for benchmarks of what durability costs; by default, not."""

    def __init__(
        self,
        standby_of: "ThrowawayPostgres | None" = None,
        data_from: Callable[[Path], None] | None = None,
        durable: bool = False,
    ) -> None:
        self.durable = durable
        self.bindir = Path(subprocess.check_output(["pg_config", "--bindir"], text=True).strip())
        self.root = owned_temp_dir("throwaway-postgres-")
        self.data = self.root / "data"
        self.log_path = self.root / "server.log"
        self.port = 0
        if data_from is not None:
            try:
                data_from(self.data)
            except BaseException:
                shutil.rmtree(self.root, ignore_errors=True)
                raise
        elif standby_of is None:
            self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8")
        else:
            self._run(
                "pg_basebackup", "-D", self.data, "-R", "-X", "stream", "-c", "fast",
                "-h", "127.0.0.1", "-p", str(standby_of.port), "-U", "postgres",
            )  # fmt: skip

    def url(self, driver: str = "psycopg") -> str:
        """A SQLAlchemy URL of the cluster's database, with that driver."""
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/postgres"

    def log(self) -> str:
        """What the server logged (pg_ctl's -l file)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def postmaster_pid(self) -> int:
        """The running server's main process, whose children are the backends (benchmarks
        read their CPU time from /proc)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def _run(self, program: str, *args, check: bool = True) -> None:
        subprocess.run(
            [*AS_POSTGRES, self.bindir / program, *args], check=check, capture_output=True
        )

    def _start_on(self, port: int) -> None:
        options = [
            "listen_addresses=127.0.0.1",
            f"port={port}",
            f"unix_socket_directories={self.root}",
            # Each line names its process's kind ("[startup]"): a restore's own last word is
            # told from the refusals of connections made while it was ending.
            "log_line_prefix='%m [%p] [%b] '",
        ]
        if not self.durable:
            # Nothing here outlives the run: durability only costs time.
            options += ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
        self._run(
            "pg_ctl", "-D", self.data, "-l", self.log_path, "-w",
            "-o", " ".join(f"-c {option}" for option in options), "start",
        )  # fmt: skip

    def start(self) -> None:
        """Start the server: on a free port the first time, on the same port afterwards."""
        if self.port:
            self._start_on(self.port)
        else:
            self.port = on_a_free_port(self._start_on)

    def has_stopped(self) -> bool:
        """Whether the server is gone (it removes postmaster.pid as it exits)."""
        return not (self.data / "postmaster.pid").exists()

    def promote(self) -> None:
        """Make this standby a primary, as a failover would."""
        self._run("pg_ctl", "-D", self.data, "-w", "promote")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        # The server may be stopped already (a test stopped it, or it never started).
        self._run("pg_ctl", "-D", self.data, "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def throwaway_postgres(
    standby_of: ThrowawayPostgres | None = None, durable: bool = False
) -> Iterator[ThrowawayPostgres]:
    cluster = ThrowawayPostgres(standby_of, durable=durable)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


# docker-compose.yml's PgBouncer configuration: the suite runs it, with only its addresses,
# authentication, files and pool size changed.
PGBOUNCER_INI = Path(__file__).resolve().parent.parent / "deploy" / "pgbouncer" / "pgbouncer.ini"


@contextmanager
def throwaway_pgbouncer(server: URL, pool_size: int = 4) -> Iterator[int]:
    """Debian's PgBouncer in front of `server`, configured as docker-compose.yml runs it
    (transaction mode, no startup parameter ignored) but with a small pool; yields its port.

    Clients log in as the server URL's user, without a password: PgBouncer logs in to
    the server with the URL's credentials.
    """
    root = owned_temp_dir("throwaway-pgbouncer-")
    (root / "users.txt").write_text(f'"{server.username}" ""\n')
    login = {"host": server.host, "port": server.port or 5432, "user": server.username}
    if server.password:
        login["password"] = server.password

    def start_on(port: int) -> None:
        config = configparser.ConfigParser(interpolation=None)
        config.read(PGBOUNCER_INI)
        config["databases"] = {"*": " ".join(f"{key}={value}" for key, value in login.items())}
        config["pgbouncer"].update(
            listen_addr="127.0.0.1",
            listen_port=str(port),
            auth_type="trust",
            auth_file=f"{root}/users.txt",
            default_pool_size=str(pool_size),
            logfile=f"{root}/pgbouncer.log",
            pidfile=f"{root}/pgbouncer.pid",
        )
        with (root / "pgbouncer.ini").open("w") as ini:
            config.write(ini)
        subprocess.run(
            [*AS_POSTGRES, "pgbouncer", "-d", root / "pgbouncer.ini"],
            check=True,
            capture_output=True,
        )

    try:
        yield on_a_free_port(start_on)
    finally:
        pid_file = root / "pgbouncer.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        shutil.rmtree(root, ignore_errors=True)
