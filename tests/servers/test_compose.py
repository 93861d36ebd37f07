"""docker-compose.yml is valid and wires the services as docs/operations.md says; the commands
it and the Dockerfile run in our image serve as written: the API's start migrates, then becomes
gunicorn, and the worker runs imports."""

import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from alembic.script import ScriptDirectory
from conftest import migrated_app
from sqlalchemy import URL, create_engine, make_url
from sqlalchemy.exc import OperationalError
from support import JWT_SECRET
from support.http import sign_up
from support.worker import import_runs

from app import create_app
from config.settings import Settings
from tools.gunicorn_server import serving_as_written
from tools.throwaway_patroni import wait_for
from tools.throwaway_postgres import AS_POSTGRES, free_port, owned_temp_dir, throwaway_postgres
from tools.webhook_receiver import webhook_receiver

ROOT = Path(__file__).resolve().parents[2]


def compose_config(directory: Path, *files: str, **dotenv: str) -> subprocess.CompletedProcess:
    """`docker-compose config` of the project's compose file (and `files` over it) beside a
    .env made as the README says (.env.example copied, then `dotenv` set), in `directory`,
    not the checkout: a .env of the developer's own stays out of it."""
    for file in ("docker-compose.yml", *files):
        shutil.copy(ROOT / file, directory)
    (directory / "deploy").symlink_to(ROOT / "deploy")
    lines = [f"{name}={value}" for name, value in dotenv.items()]
    (directory / ".env").write_text("\n".join([(ROOT / ".env.example").read_text(), *lines]))
    # Debian's docker-compose validates the file the same way on every machine, whichever
    # docker client (with or without its compose plugin) is installed (`make test` installs it).
    return subprocess.run(
        ["docker-compose", *(f"--file={file}" for file in ("docker-compose.yml", *files)),
         "config"],
        cwd=directory, capture_output=True, text=True,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
    )  # fmt: skip


def test_compose_file_validates_and_wires_the_services(tmp_path):
    result = compose_config(tmp_path, JWT_SECRET_KEY="x" * 64)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    database, pgbouncer = services["db"], services["pgbouncer"]
    api = services["api"]

    assert "pg_isready" in " ".join(database["healthcheck"]["test"])
    assert "pgdata" in config["volumes"]
    assert "-p 6432" in " ".join(pgbouncer["healthcheck"]["test"])
    assert pgbouncer["depends_on"]["db"]["condition"] == "service_healthy"
    for service in ("db", "pgbouncer"):
        assert api["depends_on"][service]["condition"] == "service_healthy"
    # Requests through PgBouncer, migrations straight to PostgreSQL.
    assert make_url(api["environment"]["DATABASE_URL"]).host == "pgbouncer"
    assert make_url(api["environment"]["MIGRATIONS_DATABASE_URL"]).host == "db"
    # GETs from the replica, through PgBouncer's pool of it; the replica copies db.
    replica_url = make_url(api["environment"]["DATABASE_REPLICA_URLS"])
    assert (replica_url.host, replica_url.database) == ("pgbouncer", "stores_replica")
    # The worker notes its imports as their senders' writes: it knows of the replicas too.
    assert (
        services["worker"]["environment"]["DATABASE_REPLICA_URLS"]
        == (api["environment"]["DATABASE_REPLICA_URLS"])
    )
    pools = (ROOT / "deploy" / "pgbouncer" / "pgbouncer.ini").read_text()
    assert "stores_replica = host=replica port=5432 dbname=stores" in pools
    replica = services["replica"]
    assert replica["entrypoint"] == ["/usr/local/bin/start-replica"]
    assert replica["environment"]["PRIMARY_HOST"] == "db"
    assert replica["depends_on"]["db"]["condition"] == "service_healthy"
    assert "replicadata" in config["volumes"]
    assert any(  # source:target:mode
        mount.endswith("/deploy/replica/allow-replication.sh:"
                       "/docker-entrypoint-initdb.d/allow-replication.sh:ro")
        for mount in database["volumes"]
    )  # fmt: skip
    assert api["environment"]["JWT_SECRET_KEY"] == "x" * 64
    assert "/health" in " ".join(api["healthcheck"]["test"])
    # Only nginx faces clients; the API trusts it as its one proxy.
    assert "ports" not in api
    (published,) = services["nginx"]["ports"]
    assert (str(published["published"]), published["target"]) == ("8000", 8080)
    assert services["nginx"]["depends_on"]["api"]["condition"] == "service_healthy"
    assert api["environment"]["TRUSTED_PROXIES"] == "1"
    # The erasure log on a named volume of its own, where a restore of db does not reach.
    erasure_log = Path(api["environment"]["ERASURE_LOG_PATH"])
    assert "erasures" in config["volumes"]
    assert f"erasures:{erasure_log.parent}:rw" in api["volumes"]
    # Prometheus scrapes every api and worker instance on the compose network; its UI stays
    # local.
    prometheus = services["prometheus"]
    configuration, alerts = prometheus["volumes"]  # source:target:mode
    assert configuration.endswith(
        "/deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
    )
    # Its alert rules beside it, where prometheus.yml names them.
    assert alerts.endswith("/deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro")
    assert prometheus["ports"] == ["127.0.0.1:9090:9090/tcp"]
    prometheus_yml = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert prometheus_yml["rule_files"] == ["alerts.yml"]
    jobs = prometheus_yml["scrape_configs"]
    assert [job["dns_sd_configs"] for job in jobs] == [
        [{"names": ["api"], "type": "A", "port": 8000, "refresh_interval": "15s"}],
        [{"names": ["worker"], "type": "A", "port": 9100, "refresh_interval": "15s"}],
    ]
    # The purge worker: the API's image, straight to PostgreSQL (it LISTENs), after the
    # api's start has run the migrations that make procrastinate's tables.
    worker = services["worker"]
    assert make_url(worker["environment"]["DATABASE_URL"]).host == "db"
    assert worker["environment"]["WORKER_METRICS_PORT"] == "9100"
    assert worker["depends_on"]["api"]["condition"] == "service_healthy"
    assert worker["build"] == api["build"]


def test_what_env_sets_reaches_the_api(tmp_path):
    tunables = {
        "LOGIN_ATTEMPTS_PER_ACCOUNT": "7",
        "JWT_ACCESS_TOKEN_MINUTES": "5",
        "DATABASE_STATEMENT_TIMEOUT_MS": "9000",
        "WEB_CONCURRENCY": "3",
    }
    result = compose_config(tmp_path, JWT_SECRET_KEY="x" * 64, **tunables)
    assert result.returncode == 0, result.stderr
    environment = yaml.safe_load(result.stdout)["services"]["api"]["environment"]
    assert tunables.items() <= environment.items()
    # Every setting .env.example lists reaches the API, not only these.
    listed = re.findall(r"^([A-Z_0-9]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE)
    assert set(listed) <= set(environment)


def test_the_replica_service_copies_the_primary_and_streams_from_it():
    """deploy/replica's scripts on real servers: the primary's first start allows the
    replication role by password (scram, no trust rule left for it), and the replica's
    first start copies the primary and runs as its hot standby."""
    # Run as postgres, as the image's entrypoint runs them: from a directory of its own, not
    # the checkout, which may be in one only root enters (a clone under /root).
    root = owned_temp_dir("replica-")
    script = {name: shutil.copy(ROOT / "deploy" / "replica" / name, root)
              for name in ("allow-replication.sh", "start.sh")}  # fmt: skip
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        primary = stack.enter_context(throwaway_postgres())
        hba = primary.data / "pg_hba.conf"
        hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        as_the_image = {"POSTGRES_USER": "postgres", "POSTGRES_DB": "postgres",
                        "REPLICATION_PASSWORD": "s3cret", "PGHOST": "127.0.0.1",
                        "PGPORT": str(primary.port), "PGDATA": str(primary.data)}  # fmt: skip
        subprocess.run([*AS_POSTGRES, script["allow-replication.sh"]], check=True,
                       env={**os.environ, **as_the_image})  # fmt: skip
        subprocess.run([*AS_POSTGRES, primary.bindir / "pg_ctl", "-D", primary.data, "reload"],
                       check=True, capture_output=True)  # fmt: skip
        engine = create_engine(primary.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.exec_driver_sql("CREATE TABLE copied AS SELECT 42 AS answer")

        port = free_port()
        replica = subprocess.Popen(
            [*AS_POSTGRES, script["start.sh"], primary.bindir / "postgres",
             "-c", f"port={port}", "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={root}"],
            env={**os.environ, "PATH": f"{primary.bindir}:{os.environ['PATH']}",
                 "PGDATA": str(root / "data"), "PRIMARY_HOST": "127.0.0.1",
                 "PRIMARY_PORT": str(primary.port), "REPLICATION_PASSWORD": "s3cret"},
        )  # fmt: skip
        try:
            standby = create_engine(make_url(primary.url()).set(port=port))
            deadline = time.monotonic() + 60
            while True:
                try:
                    with standby.connect() as connection:
                        in_recovery = connection.exec_driver_sql("SELECT pg_is_in_recovery()")
                        assert in_recovery.scalar() is True
                        copied = connection.exec_driver_sql("SELECT answer FROM copied")
                        assert copied.scalar() == 42
                    break
                except OperationalError:
                    assert time.monotonic() < deadline
                    assert replica.poll() is None
                    time.sleep(0.2)

            # Consistent from the base backup's WAL, the standby answers before its WAL
            # receiver has connected: streaming comes a moment later.
            def streaming() -> bool:
                with engine.connect() as connection:
                    senders = connection.exec_driver_sql(
                        "SELECT usename, state FROM pg_stat_replication"
                    ).all()
                return ("replicator", "streaming") in [tuple(row) for row in senders]

            wait_for(streaming, "the standby streaming from the primary", 30)
        finally:
            replica.terminate()
            replica.wait(timeout=30)


def test_gunicorn_runs_a_worker_per_cpu_it_may_use_unless_told():
    def workers(*command: str, **env: str) -> int:
        script = "import runpy; print(runpy.run_path('gunicorn.conf.py')['workers'])"
        run = subprocess.run(
            [*command, sys.executable, "-c", script],
            cwd=ROOT, capture_output=True, text=True, check=True,
            env={**os.environ, "WEB_CONCURRENCY": "", **env},
        )  # fmt: skip
        return int(run.stdout)

    # taskset: as a container limited to one CPU (cpuset) of a larger host.
    assert workers("taskset", "-c", "0") == 1
    assert workers("taskset", "-c", "0", WEB_CONCURRENCY="3") == 3


def test_compose_refuses_to_run_without_a_token_secret(tmp_path):
    result = compose_config(tmp_path)
    assert result.returncode != 0
    assert "JWT_SECRET_KEY" in result.stderr


def test_the_image_leaves_secrets_and_local_data_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", "instance"} <= set(ignored)


def test_the_high_availability_file_puts_haproxy_before_two_patroni_nodes(tmp_path):
    result = compose_config(tmp_path, "docker-compose.ha.yml", JWT_SECRET_KEY="x" * 64)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    # Everything that reached PostgreSQL as db:5432 now reaches HAProxy there.
    assert services["db"]["build"]["context"].endswith("deploy/haproxy")
    haproxy = (ROOT / "deploy" / "haproxy" / "haproxy.cfg").read_text()
    for node in ("db1", "db2"):
        patroni = services[node]
        assert patroni["build"]["context"].endswith("deploy/patroni")
        assert patroni["environment"]["PATRONI_NAME"] == node
        assert patroni["environment"]["PATRONI_ETCD3_HOSTS"] == "etcd:2379"
        assert f"server {node} {node}:5432 check port 8008" in haproxy
    assert "http://127.0.0.1:8405/health" in services["db"]["healthcheck"]["test"]
    assert "bind *:8405" in haproxy
    assert services["worker"]["restart"] == "unless-stopped"
    # The replica streams through HAProxy from the primary, as Patroni's replication role.
    assert services["replica"]["environment"]["PRIMARY_HOST"] == "db"
    patroni = services["db1"]["environment"]
    assert (
        services["replica"]["environment"]["REPLICATION_PASSWORD"]
        == patroni["PATRONI_REPLICATION_PASSWORD"]
    )


def server_options(command: list[str]) -> dict[str, str]:
    """The `-c name=value` settings of a `postgres` command."""
    pairs = itertools.pairwise(command)
    return dict(value.split("=", 1) for flag, value in pairs if flag == "-c")


ARCHIVING = {
    "archive_mode": "on",
    "archive_command": "pgbackrest --stanza=stores archive-push %p",
    "archive_timeout": "60",
}


def test_db_archives_its_wal_where_the_backup_service_backs_it_up(tmp_path):
    result = compose_config(tmp_path, JWT_SECRET_KEY="x" * 64, BACKUP_RETENTION_DAYS="30")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    database, backup = services["db"], services["backup"]
    # The image with pgBackRest, for db, its replica and the backup service.
    for service in (database, backup, services["replica"]):
        assert service["build"]["context"].endswith("deploy/postgres")
    assert "pgbackrest" in (ROOT / "deploy" / "postgres" / "Dockerfile").read_text()
    # pgbackrest.conf written, then the image's own start, with archiving on.
    assert database["entrypoint"] == ["/usr/local/bin/backup", "configure", "docker-entrypoint.sh"]
    assert database["command"][0] == "postgres"
    assert ARCHIVING.items() <= server_options(database["command"]).items()
    assert (backup["entrypoint"], backup["command"]) == (["/usr/local/bin/backup"], ["run"])
    assert backup["user"] == "postgres"
    assert backup["depends_on"]["db"]["condition"] == "service_healthy"
    # The backup service beside db: its data directory (read only) at the same path, its
    # socket, the same repository and script.
    for mount in ("pgdata:/var/lib/postgresql/data:ro", "pgsocket:/var/run/postgresql:rw",
                  "backups:/var/lib/pgbackrest:rw"):  # fmt: skip
        assert mount in backup["volumes"]
    for mount in ("pgsocket:/var/run/postgresql:rw", "backups:/var/lib/pgbackrest:rw"):
        assert mount in database["volumes"]
    for service in (database, backup):
        assert any(
            mount.endswith("/deploy/backup/backup.sh:/usr/local/bin/backup:ro")
            for mount in service["volumes"]
        )
        assert service["environment"]["BACKUP_RETENTION_DAYS"] == "30"
        assert service["environment"]["POSTGRES_USER"] == database["environment"]["POSTGRES_USER"]
    assert {"pgsocket", "backups"} <= set(config["volumes"])
    # .env.example's defaults reach the schedule.
    assert {
        "BACKUP_FULL_EVERY_HOURS": "168",
        "BACKUP_DIFF_EVERY_HOURS": "24",
        "BACKUP_INCR_EVERY_HOURS": "1",
        "BACKUP_VERIFY_EVERY_HOURS": "24",
    }.items() <= backup["environment"].items()
    # The backup service's status, read only by the api's /metrics, on a volume the backup
    # service's image makes (the api starts after it).
    status = Path(backup["environment"]["BACKUP_STATUS_PATH"])
    assert services["api"]["environment"]["BACKUP_STATUS_PATH"] == str(status)
    assert f"backup-status:{status.parent}:rw" in backup["volumes"]
    assert f"backup-status:{status.parent}:ro" in services["api"]["volumes"]
    assert services["api"]["depends_on"]["backup"]["condition"] == "service_started"
    assert str(status.parent) in (ROOT / "deploy" / "postgres" / "Dockerfile").read_text()


def test_under_patroni_the_primary_archives_to_one_repository_and_its_backup_service_backs_up(
    tmp_path,
):
    result = compose_config(tmp_path, "docker-compose.ha.yml", JWT_SECRET_KEY="x" * 64)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    # Archiving from whichever node is the primary: Patroni's parameters, the same on both.
    patroni = yaml.safe_load((ROOT / "deploy" / "patroni" / "patroni.yml").read_text())
    parameters = patroni["bootstrap"]["dcs"]["postgresql"]["parameters"]
    assert {name: str(parameters[name]) for name in ARCHIVING} == ARCHIVING
    assert "pgbackrest" in (ROOT / "deploy" / "patroni" / "Dockerfile").read_text()
    data = patroni["postgresql"]["data_dir"]
    for node, backup in (("db1", "backup"), ("db2", "backup2")):
        node_service, backup_service = services[node], services[backup]
        assert node_service["command"] == [
            "/usr/local/bin/backup", "configure", "patroni", "/etc/patroni/patroni.yml"
        ]  # fmt: skip
        # One repository for both nodes: a new primary archives where the old one did.
        assert "backups:/var/lib/pgbackrest:rw" in node_service["volumes"]
        assert "backups:/var/lib/pgbackrest:rw" in backup_service["volumes"]
        # Each node's backup service beside it: its data (read only) and socket.
        assert f"{node}data:{data}:rw" in node_service["volumes"]
        assert f"{node}data:{data}:ro" in backup_service["volumes"]
        assert f"{node}socket:/var/run/postgresql:rw" in node_service["volumes"]
        assert f"{node}socket:/var/run/postgresql:rw" in backup_service["volumes"]
        for service in (node_service, backup_service):
            assert service["environment"]["PGDATA"] == data
        assert backup_service["build"]["context"].endswith("deploy/patroni")
        assert (backup_service["entrypoint"], backup_service["command"]) == (
            ["/usr/local/bin/backup"], ["run"]
        )  # fmt: skip
        assert "backup-status:/var/lib/stores-backup-status:rw" in backup_service["volumes"]
        assert (
            backup_service["environment"]["BACKUP_STATUS_PATH"]
            == (services["api"]["environment"]["BACKUP_STATUS_PATH"])
        )
    # The restore service reaches the primary through HAProxy (db) and reads the one
    # repository (its start takes the uid of Patroni's image that owns it).
    restore = services["restore"]
    assert make_url(restore["environment"]["DATABASE_URL"]).host == "db"
    assert "backups:/var/lib/pgbackrest:rw" in restore["volumes"]
    # db is HAProxy here: the main file's PostgreSQL start is not its.
    assert services["db"]["entrypoint"][0] == "haproxy"
    assert not services["db"]["command"]


def run_backup_script(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*AS_POSTGRES, *arguments], env=env, capture_output=True, text=True)


def archive_as_db_does(server, database: dict, script: Path, env: dict[str, str]) -> None:
    """db's entrypoint (`script`, backup.sh) writes pgbackrest.conf from `env`, then its command
    is `server`'s restart with compose's archive settings."""
    _, *configure = database["entrypoint"]
    configured = run_backup_script(script, *configure[:-1], "true", env=env)
    assert configured.returncode == 0, configured.stderr
    with create_engine(server.url(), isolation_level="AUTOCOMMIT").connect() as connection:
        for name, value in server_options(database["command"]).items():
            # %%: the driver's escape of archive_command's %p.
            connection.exec_driver_sql(f"ALTER SYSTEM SET {name} = '{value}'".replace("%", "%%"))
    server.stop()
    server.start()


def as_db_runs(service: dict, server, root: Path, **more: str) -> dict[str, str]:
    """The environment of compose's `service` (db, backup), beside `server` as db and with
    the repository under `root`."""
    return {
        **os.environ,
        **service["environment"],
        "BACKUP_REPOSITORY": str(root / "repository"),
        "PGDATA": str(server.data),
        "PGHOST": str(server.root),
        "PGPORT": str(server.port),
        "POSTGRES_USER": "postgres",
        **more,
    }


@contextmanager
def backup_loop(tmp_path: Path, monkeypatch, **settings: str) -> Iterator[tuple[dict, Path]]:
    """deploy/backup/backup.sh's loop as compose runs it, as postgres, against a real server
    started with compose's archive settings (db's entrypoint writes pgbackrest.conf, the server
    archives with it), a tick every 7 s, its status in BACKUP_STATUS_PATH, into an encrypted
    repository; its environment and its log."""
    result = compose_config(tmp_path, JWT_SECRET_KEY="x" * 64)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    database, backup = services["db"], services["backup"]
    root = owned_temp_dir("backup-")
    script = shutil.copy(ROOT / "deploy" / "backup" / "backup.sh", root)
    # pgBackRest's own variables: its configuration and locks in this test's directory, for
    # the script and for the server's archive_command alike.
    monkeypatch.setenv("PGBACKREST_CONFIG", str(root / "pgbackrest.conf"))
    monkeypatch.setenv("PGBACKREST_LOCK_PATH", str(root / "lock"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        server = stack.enter_context(throwaway_postgres())
        env = as_db_runs(
            backup, server, root,
            BACKUP_ENCRYPTION_KEY="a key of the operator's",
            BACKUP_INCR_EVERY_HOURS="0.002",  # a tick every 7 s
            # Its status for /metrics, where the api would read it.
            BACKUP_STATUS_PATH=str(root / "info.json"),
            **settings,
        )  # fmt: skip
        archive_as_db_does(server, database, script, env)

        log = tmp_path / "backup.log"
        loop = subprocess.Popen(
            [*AS_POSTGRES, script, *backup["command"]], env=env,
            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        stack.callback(loop.wait, timeout=30)
        stack.callback(os.killpg, loop.pid, signal.SIGTERM)
        yield env, log


def logged_until(log: Path, line: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while line not in (text := log.read_text()):
        assert time.monotonic() < deadline, text
        time.sleep(0.2)
    return text


def test_the_backup_service_archives_and_backs_up_on_its_schedule_encrypted(tmp_path, monkeypatch):
    """The backup service's loop creates the stanza, takes a full backup, checks archiving
    and verifies the repository, then an incremental backup on its next tick; the repository
    is encrypted with BACKUP_ENCRYPTION_KEY."""
    with backup_loop(tmp_path, monkeypatch) as (env, log):
        logged_until(log, "backup --type=incr")
        steps = re.findall(r"^\S+Z backup: (.+) (ok|FAILED \(exit \d+\)), \d+ s$",
                           log.read_text(), re.MULTILINE)  # fmt: skip
        assert steps == [
            ("stanza-create", "ok"),
            ("backup --type=full", "ok"),
            ("check", "ok"),
            ("verify", "ok"),
            ("stanza-create", "ok"),
            ("backup --type=incr", "ok"),
        ], log.read_text()
        info = run_backup_script("pgbackrest", "--stanza=stores", "--output=json", "info", env=env)
        assert info.returncode == 0, info.stderr
        (stanza,) = json.loads(info.stdout)
        assert [backup["type"] for backup in stanza["backup"]] == ["full", "incr"]
        assert stanza["cipher"] == "aes-256-cbc"
        # The status written after each tick: pgBackRest's info (the full backup's at least,
        # the incremental's once that tick ended), readable by all, whole (renamed into place).
        status = Path(env["BACKUP_STATUS_PATH"])
        deadline = time.monotonic() + 30
        while len(json.loads(status.read_text())[0]["backup"]) < 2:
            assert time.monotonic() < deadline, status.read_text()
            time.sleep(0.2)
        (written,) = json.loads(status.read_text())
        assert written["backup"] == stanza["backup"]
        assert status.stat().st_mode & 0o777 == 0o644
        assert not status.with_name("info.json.new").exists()
        # Archived: the WAL from the full backup's start on is in the repository.
        assert stanza["archive"][0]["max"] >= stanza["backup"][0]["archive"]["stop"]
        # Unreadable without the key (what pgBackRest quotes of it is not text).
        unkeyed = subprocess.run(
            [*AS_POSTGRES, "pgbackrest", "--stanza=stores", "--repo1-cipher-type=none", "info"],
            env=env, capture_output=True,
        )  # fmt: skip
        assert b"unable to load info file" in unkeyed.stdout, unkeyed.stdout


def test_the_backup_service_says_a_damaged_repository_failed_its_verify(tmp_path, monkeypatch):
    """pgBackRest 2.45's verify exits with 0 on a damaged repository: the loop reads its
    report, logs FAILED, and /metrics shows it (backup_repository_verified 0)."""
    with backup_loop(tmp_path, monkeypatch, BACKUP_VERIFY_EVERY_HOURS="0.002") as (env, log):
        app = create_app(
            Settings(backup_status_path=env["BACKUP_STATUS_PATH"], jwt_secret_key=JWT_SECRET),
            TESTING=True,
        )
        logged_until(log, "verify ok")
        assert "backup_repository_verified 1.0" in app.test_client().get("/metrics").text

        repository = Path(env["BACKUP_REPOSITORY"]) / "backup"
        damaged = max(repository.rglob("*.zst"), key=lambda file: file.stat().st_size)
        data = bytearray(damaged.read_bytes())
        data[len(data) // 2] ^= 0xFF
        damaged.write_bytes(bytes(data))
        text = logged_until(log, "verify FAILED")
        assert re.search(r"^\S+Z backup: verify FAILED \(exit 3\), \d+ s$", text, re.M), text
        assert "checksum invalid" in text  # the report, above it
        assert "backup_repository_verified 0.0" in app.test_client().get("/metrics").text


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("BACKUP_INCR_EVERY_HOURS", "one", "is no number of hours"),
        ("BACKUP_DIFF_EVERY_HOURS", "24h", "is no number of hours"),
        ("BACKUP_FULL_EVERY_HOURS", "1.6.8", "is no number of hours"),
        ("BACKUP_VERIFY_EVERY_HOURS", "-1", "is no number of hours"),
        ("BACKUP_INCR_EVERY_HOURS", "0", "is under a second"),
    ],
)
def test_the_backup_service_refuses_to_start_on_a_schedule_it_cannot_read(name, value, said):
    """Not a loop without pause (awk reads a word as 0 hours): it says which setting."""
    root = owned_temp_dir("backup-schedule-")
    try:
        script = shutil.copy(ROOT / "deploy" / "backup" / "backup.sh", root)
        env = {**os.environ, "PGBACKREST_CONFIG": str(root / "pgbackrest.conf"), name: value}
        loop = subprocess.Popen(
            [*AS_POSTGRES, script, "run"], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            stdout, stderr = loop.communicate(timeout=10)
        finally:
            with suppress(ProcessLookupError):  # a loop started: what the test finds wrong
                os.killpg(loop.pid, signal.SIGKILL)
        assert loop.returncode == 2, stdout + stderr
        assert f"backup: {name}={value} {said}" in stderr
        assert "not started" in stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_backup_configuration_keeps_the_retention_and_encrypts_only_with_a_key(tmp_path):
    root = owned_temp_dir("backup-config-")
    try:
        script = shutil.copy(ROOT / "deploy" / "backup" / "backup.sh", root)
        config = root / "pgbackrest.conf"
        base = {**os.environ, "PGBACKREST_CONFIG": str(config), "BACKUP_RETENTION_DAYS": "7"}

        def written(**env: str) -> str:
            configured = run_backup_script(script, "configure", "true", env={**base, **env})
            assert configured.returncode == 0, configured.stderr
            return config.read_text()

        plain = written(BACKUP_ENCRYPTION_KEY="")
        assert "repo1-cipher-type=none" in plain.splitlines()
        assert "cipher-pass" not in plain
        encrypted = written(BACKUP_ENCRYPTION_KEY="s3cret")
        assert {"repo1-cipher-type=aes-256-cbc", "repo1-cipher-pass=s3cret"} <= set(
            encrypted.splitlines()
        )
        assert {"repo1-retention-full-type=time", "repo1-retention-full=7"} <= set(
            encrypted.splitlines()
        )
        # The key is in it: for its owner alone.
        assert config.stat().st_mode & 0o077 == 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Image(NamedTuple):
    """What the Dockerfile says of how its command runs."""

    env: dict[str, str]
    user: str
    command: list[str]


def dockerfile() -> Image:
    env, user, command = {}, "root", []
    for line in (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines():
        instruction, _, argument = line.strip().partition(" ")
        if instruction == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(argument))
        elif instruction == "USER":
            user = argument.strip()
        elif instruction == "CMD":
            command = json.loads(argument)
    return Image(env, user, command)


def as_a_user_of_its_own(image: Image) -> list[str]:
    """The prefix that runs a command as the image does: as an unprivileged user (nobody, for
    the image's `api`) when the suite is root."""
    if image.user == "root" or os.geteuid() != 0:
        return []
    drop = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    # Through sh, as deploy/start.sh runs its programs.
    reachable = [*drop, "sh", "-c", f"'{sys.executable}' -c 'import flask'"]
    if subprocess.run(reachable, check=False, capture_output=True).returncode:
        # The suite's packages are in a directory only root may enter (a checkout under
        # /root and its .venv), where the image installs them for all to read: reading
        # anything (CAP_DAC_READ_SEARCH), and writing only what the user may, stands in.
        drop += ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    return drop


@contextmanager
def the_image_directory() -> Iterator[Path]:
    """The image's /app: the build context but what .dockerignore leaves out, the directory
    itself the user's (`chown api /app`), its files root's."""
    ignored = [pattern.removeprefix("**/").rstrip("/") for pattern in
               (ROOT / ".dockerignore").read_text().split()]  # fmt: skip
    app = Path(tempfile.mkdtemp(prefix="image-app-"))
    try:
        shutil.copytree(ROOT, app, ignore=shutil.ignore_patterns(*ignored), dirs_exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(app, "nobody")
        yield app
    finally:
        shutil.rmtree(app, ignore_errors=True)


def environment(image: Image, service: dict, servers: dict[str, URL]) -> dict[str, str]:
    """The image's environment and the service's variables as compose resolves them, with
    the hosts its database URLs name (db, pgbouncer) the suite's servers, and its metrics on
    a free port: nothing else from this process (no PYTHONPATH)."""
    env = {
        # The python image's own, with this suite's interpreter in the place of its.
        "PATH": f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
        ":/sbin:/bin",
        "LANG": "C.UTF-8",
        **image.env,
    }
    for name, value in service["environment"].items():
        if value and value.startswith("postgresql"):
            urls = [make_url(url) for url in value.split(",")]
            value = ",".join(
                servers[url.host]
                .set(drivername=url.drivername)
                .render_as_string(hide_password=False)
                for url in urls
            )
        env[name] = value or ""
    if env.get("WORKER_METRICS_PORT"):
        env["WORKER_METRICS_PORT"] = str(free_port())
    return env


ERASURE = {
    "store_id": 7,
    "store_created_at": "2026-12-01T00:00:00+00:00",
    "requested_at": "2026-12-02T00:00:00+00:00",
}


def streamed_live(
    app: Path,
    command: list[str],
    env: dict[str, str],
    healthcheck: list[str],
    api: str,
    user: list[str],
) -> bool:
    """The stream service's command, as written, passes its healthcheck and streams a store's
    creation through the API as it commits."""
    with serving_as_written(command, env, cwd=app) as (url, stream):
        _kind, *check = healthcheck
        check = [part.replace(":8000/", f":{urlsplit(url).port}/") for part in check]
        subprocess.run([*user, *check], cwd=app, env=env, check=True, timeout=30)
        headers = sign_up(api, "streamer")
        with requests.get(f"{url}/events/stream", headers=headers, stream=True, timeout=30) as live:
            lines = live.iter_lines()
            assert next(lines) == b"retry: 3000"
            requests.post(f"{api}/store", json={"name": "Live"}, headers=headers, timeout=30)
            assert b"event: store.created" in lines
    return stream.returncode == 0  # a clean shutdown, with the stream closed


def test_the_image_commands_serve_as_compose_runs_them(tmp_path, backends, new_database):
    """Each command compose runs in our image, as written, from a copy of what the image holds
    and as its unprivileged user: the API's (the Dockerfile's CMD) migrates straight to
    PostgreSQL, then serves through PgBouncer and passes compose's healthcheck; the worker's
    runs an import queued through it to the end, and delivers its events to a webhook."""
    result = compose_config(tmp_path, JWT_SECRET_KEY=JWT_SECRET)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    ours = {
        name: service for name, service in services.items()
        if service.get("build", {}).get("context") == str(tmp_path)
    }  # fmt: skip
    # The restore service's (its own stage of the image): test_the_restore_service_...
    assert set(ours) == {"api", "worker", "stream", "restore"}, (
        "a new service of our image: run it here"
    )
    image = dockerfile()
    user = as_a_user_of_its_own(image)
    servers = {
        "db": new_database,
        "pgbouncer": new_database.set(host="127.0.0.1", port=backends.pgbouncer()),
    }

    def command(service: str) -> list[str]:
        return [*user, *(ours[service].get("command") or image.command)]

    api_env = environment(image, ours["api"], servers)
    # The erasures volume's stand-in, holding an erasure the new database lacks: the API's
    # start puts it there (flask apply-erasures, after the migrations).
    erasures = Path(tempfile.mkdtemp(prefix="erasures-"))
    erasures.chmod(0o755)  # for the image's user
    api_env["ERASURE_LOG_PATH"] = str(erasures / "erasures.jsonl")
    Path(api_env["ERASURE_LOG_PATH"]).write_text(json.dumps(ERASURE) + "\n")
    with (
        the_image_directory() as app,
        serving_as_written(command("api"), api_env, cwd=app) as (url, api),
    ):
        # exec: the process the container starts is gunicorn itself, which gets the signals.
        assert "gunicorn" in Path(f"/proc/{api.pid}/cmdline").read_text()
        # compose's healthcheck, asking this server's port instead of the container's 8000.
        kind, *healthcheck = ours["api"]["healthcheck"]["test"]
        assert kind == "CMD"
        healthcheck = [part.replace(":8000/", f":{urlsplit(url).port}/") for part in healthcheck]
        subprocess.run([*user, *healthcheck], cwd=app, env=api_env, check=True, timeout=30)
        assert streamed_live(app, command("stream"), environment(image, ours["stream"], servers),
                             ours["stream"]["healthcheck"]["test"], url, user)  # fmt: skip

        log = tmp_path / "worker.log"
        # The tests' receiver is on loopback: allowed to the worker here alone.
        worker_env = {
            **environment(image, ours["worker"], servers),
            "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8,::1",
        }
        worker = subprocess.Popen(
            command("worker"), cwd=app, env=worker_env,
            stdout=subprocess.DEVNULL, stderr=log.open("w"),
        )  # fmt: skip
        try:
            headers = sign_up(url, "image-commands")
            with webhook_receiver() as (receiver, receiver_url):
                # A name: the API, allowing no loopback, refuses loopback addresses.
                hook_url = receiver_url.replace("127.0.0.1", "localhost")
                hooked = requests.post(
                    f"{url}/webhooks", json={"url": hook_url}, headers=headers, timeout=30
                )
                assert hooked.status_code == 201, hooked.text
                store = requests.post(
                    f"{url}/store", json={"name": "Imported"}, headers=headers, timeout=30
                ).json()
                imported = import_runs(url, headers, store["id"])
                delivered = [json.loads(each.body)["type"] for each in receiver.wait_for(2, 30)]
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        assert imported, log.read_text()
        assert delivered == ["store.created", "import.succeeded"]
        assert worker.returncode == 0, log.read_text()
    assert api.returncode == 0  # a clean shutdown on SIGTERM
    shutil.rmtree(erasures)
    with create_engine(new_database).connect() as migrated:
        version = migrated.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        erased = migrated.exec_driver_sql("SELECT store_id FROM erasures").all()
    assert version == [(ScriptDirectory(str(ROOT / "migrations")).get_current_head(),)]
    assert erased == [(ERASURE["store_id"],)]


def test_the_restore_service_brings_a_store_back_as_the_runbook_runs_it(tmp_path, monkeypatch):
    """The restore service's commands as docs/operations.md runs them (`docker compose run
    --rm restore flask ...`: its entrypoint, then the command), from a copy of the image's
    /app, as the image's root, with its environment, against a server that archives as db
    does: `flask backup-window` (its default command) shows the window, and `flask
    restore-store` brings back a store deleted since a time."""
    result = compose_config(tmp_path, JWT_SECRET_KEY=JWT_SECRET)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    database, restore = services["db"], services["restore"]
    assert restore["build"]["target"] == "restore"
    assert restore["profiles"] == ["restore"]  # not started by `up`
    assert {"backups:/var/lib/pgbackrest:rw", "erasures:/var/lib/stores-erasures:ro"} <= set(
        restore["volumes"]
    )
    for script, mounted in (("backup/backup.sh", "backup"), ("restore/start.sh", "start-restore")):
        assert any(mount.endswith(f"/deploy/{script}:/usr/local/bin/{mounted}:ro")
                   for mount in restore["volumes"])  # fmt: skip
    assert "pgbackrest" in (ROOT / "Dockerfile").read_text()
    # Straight to PostgreSQL, as the migrations go.
    assert make_url(restore["environment"]["DATABASE_URL"]).host == "db"
    root = owned_temp_dir("restore-")
    for script, name in (("backup/backup.sh", "backup"), ("restore/start.sh", "start-restore")):
        shutil.copy(ROOT / "deploy" / script, root / name)
    monkeypatch.setenv("PGBACKREST_CONFIG", str(root / "pgbackrest.conf"))
    monkeypatch.setenv("PGBACKREST_LOCK_PATH", str(root / "lock"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        server = stack.enter_context(throwaway_postgres())
        # db, archiving into the repository (as in the backup service's test).
        env = as_db_runs(database, server, root)
        archive_as_db_does(server, database, root / "backup", env)
        live = create_engine(server.url(), isolation_level="AUTOCOMMIT")
        migrated_app(server.url("psycopg2"))
        with live.connect() as connection:
            store_id = connection.exec_driver_sql(
                "INSERT INTO stores (name) VALUES ('Lamps') RETURNING id"
            ).scalar()
            connection.exec_driver_sql(
                "INSERT INTO items (name, price, store_id) SELECT 'lamp ' || n, n, %s"
                " FROM generate_series(1, 3) n", (store_id,),
            )  # fmt: skip
        for step in (["stanza-create"], ["backup", "--type=full"]):
            done = run_backup_script("pgbackrest", "--stanza=stores", *step, env=env)
            assert done.returncode == 0, done.stderr
        time.sleep(1.1)  # a restore reaches a time after the backup's stop second
        at = datetime.now(UTC)
        with live.connect() as connection:
            connection.exec_driver_sql(f"DELETE FROM stores WHERE id = {store_id}")
        # The delete archived: the archive reaches past `at`.
        checked = run_backup_script("pgbackrest", "--stanza=stores", "check", env=env)
        assert checked.returncode == 0, checked.stderr

        image = dockerfile()
        restore_env = environment(image, restore, {"db": make_url(server.url())})
        restore_env |= {
            "PATH": f"{root}:{restore_env['PATH']}",  # /usr/local/bin's scripts
            "BACKUP_REPOSITORY": env["BACKUP_REPOSITORY"],
            "PGBACKREST_CONFIG": env["PGBACKREST_CONFIG"],
            "PGBACKREST_LOCK_PATH": env["PGBACKREST_LOCK_PATH"],
            "ERASURE_LOG_PATH": str(tmp_path / "erasures.jsonl"),
        }
        app = stack.enter_context(the_image_directory())

        def run(*command: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [root / "start-restore", *command], cwd=app, env=restore_env,
                capture_output=True, text=True, timeout=300,
            )  # fmt: skip

        window = run(*restore["command"])
        assert window.returncode == 0, window.stderr
        assert re.search(r"^earliest: \S+ ", window.stdout, re.MULTILINE), window.stdout
        restored = run("flask", "restore-store", str(store_id), "--at", at.isoformat())
        assert restored.returncode == 0, restored.stderr
        assert f"Store {store_id} is back as store {store_id} ('Lamps')" in restored.stdout
        with live.connect() as connection:
            items = connection.exec_driver_sql(
                f"SELECT count(*) FROM items WHERE store_id = {store_id}"
            ).scalar()
        assert items == 3


# The runbook's restore of the whole database (docs/operations.md, "Runbook: restores"): what
# it runs in db's image, as postgres.
RUNBOOK_RESTORE = 'rm -rf "$PGDATA"/* && backup configure pgbackrest --stanza=stores restore'


def test_the_runbooks_whole_database_restore_brings_back_every_archived_write(
    tmp_path, monkeypatch
):
    """The runbook's command as written, in db's environment, into the data directory of a
    stopped server that archived as db does: started again, it replays the archive to its
    end and is promoted, holding what was written after the backup too."""
    assert f"'{RUNBOOK_RESTORE}'" in (ROOT / "docs" / "operations.md").read_text()
    result = compose_config(tmp_path, JWT_SECRET_KEY="x" * 64)
    assert result.returncode == 0, result.stderr
    database = yaml.safe_load(result.stdout)["services"]["db"]
    root = owned_temp_dir("runbook-")
    shutil.copy(ROOT / "deploy" / "backup" / "backup.sh", root / "backup")
    monkeypatch.setenv("PGBACKREST_CONFIG", str(root / "pgbackrest.conf"))
    monkeypatch.setenv("PGBACKREST_LOCK_PATH", str(root / "lock"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        server = stack.enter_context(throwaway_postgres())
        env = as_db_runs(database, server, root, PATH=f"{root}:{os.environ['PATH']}")
        archive_as_db_does(server, database, root / "backup", env)
        live = create_engine(server.url(), isolation_level="AUTOCOMMIT")
        with live.connect() as connection:
            connection.exec_driver_sql("CREATE TABLE written AS SELECT 'before' AS note")
        for step in (["stanza-create"], ["backup", "--type=full"]):
            done = run_backup_script("pgbackrest", "--stanza=stores", *step, env=env)
            assert done.returncode == 0, done.stderr
        with live.connect() as connection:
            connection.exec_driver_sql("INSERT INTO written VALUES ('after the backup')")
        checked = run_backup_script("pgbackrest", "--stanza=stores", "check", env=env)
        assert checked.returncode == 0, checked.stderr
        live.dispose()
        server.stop()  # the disk lost, say

        restored = run_backup_script("sh", "-c", RUNBOOK_RESTORE, env=env)
        assert restored.returncode == 0, restored.stderr
        server.start()
        deadline = time.monotonic() + 60
        with live.connect() as connection:
            while connection.exec_driver_sql("SELECT pg_is_in_recovery()").scalar():
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.2)
            notes = connection.exec_driver_sql("SELECT note FROM written ORDER BY note").all()
        assert notes == [("after the backup",), ("before",)]


def test_the_zero_loss_option_streams_db_wal_synchronously_to_the_walreceiver(tmp_path):
    """Off by default; with SYNCHRONOUS_WAL_RECEIVER=walreceiver, db names the walreceiver
    service (profile zero-loss) its synchronous standby; deploy/walreceiver/receive.sh as
    compose runs it, as postgres, against a real server: it creates its slot, becomes the
    synchronous standby, and a commit returns with its WAL in the receiver's directory."""
    (tmp_path / "default").mkdir()
    (tmp_path / "zero-loss").mkdir()
    default = compose_config(tmp_path / "default", JWT_SECRET_KEY="x" * 64)
    assert default.returncode == 0, default.stderr
    default_db = yaml.safe_load(default.stdout)["services"]["db"]
    assert server_options(default_db["command"])["synchronous_standby_names"] == ""

    result = compose_config(
        tmp_path / "zero-loss", JWT_SECRET_KEY="x" * 64, SYNCHRONOUS_WAL_RECEIVER="walreceiver"
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    database, receiver = config["services"]["db"], config["services"]["walreceiver"]
    assert server_options(database["command"])["synchronous_standby_names"] == "walreceiver"
    assert receiver["profiles"] == ["zero-loss"]
    assert receiver["build"]["context"].endswith("deploy/postgres")
    assert (receiver["entrypoint"], receiver["user"]) == (
        ["/usr/local/bin/receive-wal"],
        "postgres",
    )
    assert receiver["environment"]["PRIMARY_HOST"] == "db"
    assert (
        receiver["environment"]["REPLICATION_PASSWORD"]
        == (database["environment"]["REPLICATION_PASSWORD"])
    )
    assert "streamedwal:/var/lib/walreceiver:rw" in receiver["volumes"]
    assert "streamedwal" in config["volumes"]
    assert "/var/lib/walreceiver" in (ROOT / "deploy" / "postgres" / "Dockerfile").read_text()

    directory = owned_temp_dir("walreceiver-")
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, directory, ignore_errors=True)
        server = stack.enter_context(throwaway_postgres())
        env = {
            **os.environ,
            **receiver["environment"],
            "PRIMARY_HOST": "127.0.0.1",
            "PRIMARY_PORT": str(server.port),
            "REPLICATION_USER": "postgres",  # initdb's trust rules let loopback replicate
            "WAL_RECEIVER_DIRECTORY": str(directory),
        }
        script = ROOT / "deploy" / "walreceiver" / "receive.sh"
        streaming = subprocess.Popen(
            [*AS_POSTGRES, script], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        stack.callback(os.killpg, streaming.pid, signal.SIGTERM)
        engine = create_engine(server.url(), isolation_level="AUTOCOMMIT")
        stack.callback(engine.dispose)
        with engine.connect() as connection:
            name = server_options(database["command"])["synchronous_standby_names"]
            connection.exec_driver_sql(f"ALTER SYSTEM SET synchronous_standby_names = '{name}'")
            connection.exec_driver_sql("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 30
            state = None
            while state != "sync":
                assert time.monotonic() < deadline, f"not the synchronous standby: {state}"
                time.sleep(0.1)
                state = connection.exec_driver_sql(
                    "SELECT sync_state FROM pg_stat_replication "
                    "WHERE application_name = 'walreceiver'"
                ).scalar()
            slots = connection.exec_driver_sql("SELECT slot_name FROM pg_replication_slots")
            assert slots.scalars().all() == ["walreceiver"]
            # The throwaway server commits asynchronously unless told otherwise.
            connection.exec_driver_sql("SET synchronous_commit = on")
            connection.exec_driver_sql("CREATE TABLE received (value text)")
            connection.exec_driver_sql("INSERT INTO received VALUES ('flushed on the receiver')")
        streamed = b"".join(file.read_bytes() for file in directory.iterdir())
        assert b"flushed on the receiver" in streamed
