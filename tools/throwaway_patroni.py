"""A Patroni cluster of its own for tests, gone when they end: etcd, PostgreSQL nodes under
Patroni, and HAProxy in front, each run with the configuration the deployment ships
(deploy/patroni/patroni.yml, deploy/haproxy/haproxy.cfg) with only its addresses,
directories and timings changed."""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import requests
import yaml

from tools.gunicorn_server import http_server_on_a_free_port, serving_or_failed
from tools.throwaway_postgres import AS_POSTGRES, free_port, on_a_free_port, owned_temp_dir

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
# The API's role, as deploy/patroni/post-bootstrap.sh makes it.
USER, PASSWORD = "stores", "stores-password"
SUPERUSER_PASSWORD = "postgres-password"
# Short, for a failover within seconds: Patroni wants ttl >= loop_wait + 2 * retry_timeout.
TIMINGS = {"ttl": 10, "loop_wait": 1, "retry_timeout": 3}


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> float:
    """Poll `condition` until it holds; when it did (time.monotonic())."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.1)
    return time.monotonic()


def answers(url: str) -> int | None:
    """The HTTP status `url` answers, None if nothing does."""
    try:
        return requests.get(url, timeout=1).status_code
    except requests.RequestException:
        return None


def started(
    command: list, log: Path, ready: str, env: dict | None = None, **popen
) -> subprocess.Popen:
    """Start a server that binds its own ports, its output to `log`; once `ready` answers
    200, the process (CalledProcessError if it exits first: tools.gunicorn_server)."""
    process = subprocess.Popen(
        command, stdout=log.open("w"), stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})}, **popen,
    )  # fmt: skip
    try:
        serving_or_failed(process, ready, timeout=60, status=200)
    except TimeoutError:
        stopped(process)
        raise
    return process


def stopped(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def throwaway_etcd() -> Iterator[str]:
    """A one-member etcd; yields its client address (host:port)."""
    root = Path(tempfile.mkdtemp(prefix="throwaway-etcd-"))

    def start_on(port: int) -> subprocess.Popen:
        peer = f"http://127.0.0.1:{free_port()}"
        command = [
            "etcd", "--name", "test", "--data-dir", root / f"data-{port}",
            "--listen-client-urls", f"http://127.0.0.1:{port}",
            "--advertise-client-urls", f"http://127.0.0.1:{port}",
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"test={peer}",
        ]  # fmt: skip
        log = (root / "etcd.log").open("w")
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    try:
        with http_server_on_a_free_port(start_on, "/health", timeout=60, status=200) as url:
            yield url.removeprefix("http://")
    finally:
        subprocess.run(["rm", "-rf", root], check=False)


# The stanza patroni.yml's archive_command names.
STANZA = "stores"


class PatroniNode:
    """One PostgreSQL under Patroni, on loopback ports of its own; with a `repository`, its
    archive_command (patroni.yml's) pushes to that pgBackRest repository, through a
    configuration of its own as the deployment's backup.sh writes one on each node."""

    def __init__(self, name: str, root: Path, etcd: str, repository: Path | None = None) -> None:
        self.name, self.root, self.etcd, self.repository = name, root, etcd, repository
        self.data = root / "data"
        self.pg_port = self.rest_port = 0
        self.process: subprocess.Popen | None = None
        self.pgbackrest_config = root / "pgbackrest.conf"

    def write_pgbackrest_config(self) -> None:
        options = {
            "global": {"repo1-path": self.repository, "compress-type": "zst", "start-fast": "y",
                       "log-path": self.root, "lock-path": self.root, "spool-path": self.root,
                       "log-level-console": "warn"},
            STANZA: {"pg1-path": self.data, "pg1-port": self.pg_port,
                     "pg1-socket-path": self.root, "pg1-user": "postgres"},
        }  # fmt: skip
        self.pgbackrest_config.write_text(
            "".join(
                f"[{section}]\n" + "".join(f"{name}={value}\n" for name, value in each.items())
                for section, each in options.items()
            )
        )

    def pgbackrest(self, command: str, *options: str) -> str:
        """A pgBackRest command on this node's stanza; its output."""
        return subprocess.run(
            [*AS_POSTGRES, "pgbackrest", f"--config={self.pgbackrest_config}",
             f"--stanza={STANZA}", *options, command],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip

    def start(self) -> None:
        config = yaml.safe_load((DEPLOY / "patroni" / "patroni.yml").read_text())
        config["bootstrap"]["dcs"].update(TIMINGS)
        # Run by Patroni as postgres: a copy in its own directory, not the checkout, which may
        # be in one only root enters (a clone under /root).
        config["bootstrap"]["post_bootstrap"] = shutil.copy(
            DEPLOY / "patroni" / "post-bootstrap.sh", self.root
        )
        config["postgresql"]["bin_dir"] = subprocess.check_output(
            ["pg_config", "--bindir"], text=True
        ).strip()
        # No fsync, as every throwaway cluster (tools/throwaway_postgres.py): what a killed
        # node wrote stays in the page cache, and another test's disk load does not slow
        # every commit (a failover's resumption is timed).
        config["postgresql"]["parameters"] = {
            "unix_socket_directories": str(self.root),
            "fsync": "off",
        }
        (self.root / "patroni.yml").write_text(yaml.safe_dump(config))

        def start_on(rest_port: int) -> None:
            self.rest_port, self.pg_port = rest_port, free_port()
            env = {
                "PATRONI_NAME": self.name,
                "PATRONI_RESTAPI_LISTEN": f"127.0.0.1:{rest_port}",
                "PATRONI_RESTAPI_CONNECT_ADDRESS": f"127.0.0.1:{rest_port}",
                "PATRONI_POSTGRESQL_LISTEN": f"127.0.0.1:{self.pg_port}",
                "PATRONI_POSTGRESQL_CONNECT_ADDRESS": f"127.0.0.1:{self.pg_port}",
                "PATRONI_POSTGRESQL_DATA_DIR": str(self.data),
                "PATRONI_POSTGRESQL_PGPASS": str(self.root / "pgpass"),
                "HOME": str(self.root),
                "PATRONI_ETCD3_HOSTS": self.etcd,
                "PATRONI_SUPERUSER_PASSWORD": SUPERUSER_PASSWORD,
                "PATRONI_REPLICATION_PASSWORD": "replicator-password",
                "DB_USER": USER,
                "DB_PASSWORD": PASSWORD,
            }
            if self.repository is not None:
                # Postgres inherits it from Patroni: archive-push finds the configuration.
                self.write_pgbackrest_config()
                env["PGBACKREST_CONFIG"] = str(self.pgbackrest_config)
            command = ["patroni", self.root / "patroni.yml"]
            # Patroni itself, not runuser around it, so that kill() kills Patroni. In its own
            # directory: the processes it spawns go back to its working directory, which the
            # checkout's may not be for postgres (a clone under /root).
            user = {"user": "postgres", "group": "postgres"} if AS_POSTGRES else {}
            log = self.root / "patroni.log"
            ready = f"{self.rest_api}/liveness"
            self.process = started(command, log, ready, env, cwd=self.root, **user)

        on_a_free_port(start_on)

    @property
    def rest_api(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def is_primary(self) -> bool:
        return answers(f"{self.rest_api}/primary") == 200

    def is_synchronous_standby(self) -> bool:
        return answers(f"{self.rest_api}/synchronous") == 200

    def kill(self) -> None:
        """The node dies at once, Patroni and PostgreSQL both (SIGKILL): no clean handover."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        self.process.kill()
        self.process.wait()
        os.kill(postmaster, signal.SIGKILL)

    def stop(self) -> None:
        if self.process is not None:
            stopped(self.process)
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():  # killed nodes leave theirs
            subprocess.run(["pkill", "-KILL", "-F", pid_file], check=False)


class PatroniCluster:
    def __init__(self, nodes: list[PatroniNode]) -> None:
        self.nodes = nodes

    def primary(self) -> PatroniNode:
        (primary,) = [node for node in self.nodes if node.is_primary()]
        return primary

    def url(self, node: PatroniNode, driver: str = "psycopg2") -> str:
        return f"postgresql+{driver}://{USER}:{PASSWORD}@127.0.0.1:{node.pg_port}/{USER}"

    def multi_host_url(self, driver: str = "psycopg2") -> str:
        """libpq tries every node in turn and keeps the one that takes writes."""
        hosts = "&".join(f"host=127.0.0.1:{node.pg_port}" for node in self.nodes)
        return f"postgresql+{driver}://{USER}:{PASSWORD}@/{USER}?{hosts}&target_session_attrs=read-write"


@contextmanager
def throwaway_patroni(nodes: int = 2, repository: Path | None = None) -> Iterator[PatroniCluster]:
    """A primary and synchronous standbys under Patroni, ready: the standby streams and is
    synchronous, the API's role and database made; with a `repository`, whichever node is
    the primary archives to it (PatroniNode)."""
    with ExitStack() as stack:
        etcd = stack.enter_context(throwaway_etcd())
        members = []
        for number in range(1, nodes + 1):
            root = owned_temp_dir(f"throwaway-patroni-{number}-")
            stack.callback(subprocess.run, ["rm", "-rf", root], check=False)
            member = PatroniNode(f"db{number}", root, etcd, repository)
            stack.callback(member.stop)
            member.start()
            members.append(member)
        cluster = PatroniCluster(members)
        wait_for(lambda: any(node.is_primary() for node in members), "a primary")
        standbys = [node for node in members if not node.is_primary()]
        wait_for(lambda: all(n.is_synchronous_standby() for n in standbys), "synchronous standbys")
        yield cluster


@contextmanager
def throwaway_haproxy(cluster: PatroniCluster) -> Iterator[int]:
    """HAProxy with deploy/haproxy/haproxy.cfg, its nodes the cluster's; yields its port,
    which reaches the primary."""
    root = Path(tempfile.mkdtemp(prefix="throwaway-haproxy-"))
    shipped = (DEPLOY / "haproxy" / "haproxy.cfg").read_text()
    shipped = re.sub(r"^\s*server .*\n", "", shipped, flags=re.MULTILINE)
    servers = "".join(
        f"    server {node.name} 127.0.0.1:{node.pg_port} check port {node.rest_port}\n"
        for node in cluster.nodes
    )
    processes = []

    def start_on(port: int) -> None:
        health = f"127.0.0.1:{free_port()}"
        config = shipped.replace("bind *:5432", f"bind 127.0.0.1:{port}")
        config = config.replace("bind *:8405", f"bind {health}") + servers
        (root / "haproxy.cfg").write_text(config)
        command = ["haproxy", "-db", "-f", root / "haproxy.cfg"]
        # Ready once its health says it found the one primary, as compose waits for it.
        processes.append(started(command, root / "haproxy.log", f"http://{health}/health"))

    try:
        yield on_a_free_port(start_on)
    finally:
        for process in processes:
            stopped(process)
        subprocess.run(["rm", "-rf", root], check=False)
