"""Every setting of the API, read from the environment once, at start, and validated there.

pydantic-settings does the reading and the checking: each field is an environment variable
of the same name in capitals (.env.example lists them all, and tests/unit/test_settings.py
holds the two equal). A bad value stops the app at start with the variable's name, never
halfway through a request. `create_app(Settings(database_url=...))` overrides any of them.
"""

from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated

from flask import current_app
from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# What postgresql:// (and postgres://) URLs use: both drivers work, and psycopg2 measured
# faster for reads and for writes (docs/benchmarks.md); postgresql+psycopg:// selects
# psycopg 3.
DEFAULT_POSTGRES_DRIVER = "psycopg2"

Positive = Annotated[int, Field(ge=1)]
NotNegative = Annotated[int, Field(ge=0)]


class SettingsError(RuntimeError):
    """A variable of the environment holds what the API cannot run with."""


class Settings(BaseSettings):
    # Empty variables count as unset: `.env.example` copied as it is gives the defaults.
    model_config = SettingsConfigDict(frozen=True, env_ignore_empty=True, extra="ignore")

    # Where the data lives; empty: a SQLite file under instance/.
    database_url: str = ""
    database_connect_timeout: Positive = 3
    database_statement_timeout_ms: NotNegative = 30_000
    # Hot standbys that serve reads (replication/), comma-separated URLs like DATABASE_URL's;
    # one further behind than the lag is left out until it catches up. Lag is sampled every
    # second, so a standby replaying close behind a busy primary reads 1-2 s behind.
    database_replica_urls: str = ""
    database_replica_max_lag_seconds: Annotated[float, Field(ge=2)] = 5.0
    # A read on a standby waits no longer (our clock: a stopped server's runs no timeout).
    database_replica_timeout_seconds: Annotated[float, Field(gt=0)] = 2.0
    max_content_length: Positive = 1024 * 1024
    import_max_bytes: Positive = 256 * 1024 * 1024
    client_stall_seconds: Annotated[float, Field(gt=0)] = 30.0

    # Kept out of the repr: settings may be logged.
    jwt_secret_key: str = Field("", repr=False)
    jwt_access_token_minutes: Positive = 15
    jwt_refresh_token_days: Positive = 30

    login_attempts_per_account: Positive = 5
    login_attempts_per_account_from_new_clients: Positive = 100
    login_attempts_per_address: Positive = 30
    registrations_per_address: Positive = 10
    refreshes_per_login: Positive = 60
    ipv6_client_prefix: Annotated[int, Field(ge=0, le=128)] = 64

    trusted_proxies: NotNegative = 0
    # The hosts clients may name (Host, or X-Forwarded-Host from a trusted proxy),
    # comma-separated; a leading dot allows every subdomain. Links are built from them.
    allowed_hosts: str = "localhost,127.0.0.1"

    deleted_store_retention_days: Annotated[float, Field(gt=0)] = 30.0
    # The log of erasures kept outside the database, which no restore of it takes back
    # (backups/erasures.py); empty: erasures.jsonl under instance/, beside SQLite's file.
    erasure_log_path: str = ""
    # The backup service's account of pgBackRest's repository (`pgbackrest info` as JSON,
    # deploy/backup/backup.sh), read by /metrics; empty: no backup figures there.
    backup_status_path: str = ""
    purge_cron: str = "* * * * *"
    worker_metrics_port: Annotated[int, Field(ge=0, le=65535)] = 0
    idempotency_key_hours: Annotated[float, Field(gt=0)] = 24.0
    # How long the event feed keeps events (GET /events): a cursor older is answered 410.
    events_retention_days: Annotated[float, Field(gt=0)] = 7.0
    # Live streams (GET /events/stream) a user may hold open at once, per stream process; a
    # comment line is sent on each after this many quiet seconds (below nginx's read timeout
    # for the path, 75 s, and the idle timeouts of load balancers, 60 s at AWS).
    event_streams_per_user: Positive = 5
    event_stream_heartbeat_seconds: Annotated[float, Field(gt=0, le=60)] = 15.0
    require_if_match: bool = False
    # Networks a webhook may be delivered to although they are not public (webhooks/
    # addresses.py): comma-separated addresses or CIDR blocks, e.g. 10.0.5.0/24 for a
    # receiver of your own network. Empty: the public internet only.
    webhook_allowed_networks: str = ""
    # Webhooks a user may have: each one is a query of the feed every turn of the worker's
    # pump, whether it has events or not.
    webhooks_per_user: Positive = 20

    @field_validator("database_url")
    @classmethod
    def with_a_driver(cls, url: str) -> str:
        return with_a_driver(url)

    @field_validator("database_replica_urls")
    @classmethod
    def standbys_of_postgresql(cls, urls: str, info: ValidationInfo) -> str:
        replicas = [with_a_driver(url.strip()) for url in urls.split(",") if url.strip()]
        primary = info.data.get("database_url", "")
        if replicas and not all(url.startswith("postgresql") for url in (primary, *replicas)):
            # Without the URLs themselves: they hold passwords.
            raise ValueError("hot standbys of a PostgreSQL DATABASE_URL, as postgresql:// URLs")
        return ",".join(replicas)

    @field_validator("allowed_hosts")
    @classmethod
    def some_hosts(cls, hosts: str) -> str:
        if not any(host.strip() for host in hosts.split(",")):
            raise ValueError("at least one host name, e.g. api.example.com,localhost")
        return hosts

    @field_validator("webhook_allowed_networks")
    @classmethod
    def networks(cls, text: str) -> str:
        networks_of(text)
        return text

    @property
    def webhook_allowed_network_list(self) -> list[IPv4Network | IPv6Network]:
        return networks_of(self.webhook_allowed_networks)

    @property
    def allowed_host_list(self) -> list[str]:
        # Host names are case-insensitive: compared in lower case.
        return [host.strip().lower() for host in self.allowed_hosts.split(",") if host.strip()]

    @property
    def replica_urls(self) -> list[str]:
        return self.database_replica_urls.split(",") if self.database_replica_urls else []


def networks_of(text: str) -> list[IPv4Network | IPv6Network]:
    """The networks of a comma-separated list of addresses and CIDR blocks (ValueError, which
    names the part, on anything else)."""
    return [ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()]


def with_a_driver(url: str) -> str:
    # Some hosts hand out the scheme SQLAlchemy dropped in 1.4.
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return f"postgresql+{DEFAULT_POSTGRES_DRIVER}://" + url.removeprefix(scheme)
    return url


def load_settings(**overrides: object) -> Settings:
    """The settings of the environment, `overrides` (by field name) taking precedence; a bad
    value raises SettingsError naming its variable and what it must be."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, each['loc'])).upper()}: {each['msg']} (got {each['input']!r})"
            for each in error.errors()
        )
        raise SettingsError(f"Fix these environment variables: {problems}") from None


def current_settings() -> Settings:
    """The settings of the app serving this request or command."""
    return current_app.extensions["settings"]
