"""Settings: read once from the environment, each variable of .env.example among them."""

import pytest
from sqlalchemy import make_url

from app import create_app
from config.settings import Settings, SettingsError, load_settings
from db import READS, db

# Variables of .env.example that other programs read, not the API: who reads each.
READ_ELSEWHERE = {
    "MIGRATIONS_DATABASE_URL": "deploy/start.sh",
    "POSTGRES_PASSWORD": "docker compose",
    "REPLICATION_PASSWORD": "docker compose",
    "WEB_CONCURRENCY": "gunicorn.conf.py",
    "BACKUP_RETENTION_DAYS": "deploy/backup/backup.sh",
    "BACKUP_ENCRYPTION_KEY": "deploy/backup/backup.sh",
    "BACKUP_FULL_EVERY_HOURS": "deploy/backup/backup.sh",
    "BACKUP_DIFF_EVERY_HOURS": "deploy/backup/backup.sh",
    "BACKUP_INCR_EVERY_HOURS": "deploy/backup/backup.sh",
    "BACKUP_VERIFY_EVERY_HOURS": "deploy/backup/backup.sh",
    "SYNCHRONOUS_WAL_RECEIVER": "docker compose",
    "WAL_RECEIVER_KEEP_HOURS": "deploy/walreceiver/receive.sh",
    "TEST_DATABASE_URL": "tests/conftest.py",
    "TEST_POSTGRES_DRIVERS": "tests/conftest.py",
}


def env_example(root) -> dict[str, str]:
    lines = (root / ".env.example").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {name: value for name, value in pairs}


@pytest.fixture
def example(pytestconfig) -> dict[str, str]:
    return env_example(pytestconfig.rootpath)


def test_env_example_lists_every_setting_and_nothing_else(example):
    settings = {name.upper() for name in Settings.model_fields}
    assert set(example) - set(READ_ELSEWHERE) == settings


def test_env_example_gives_the_defaults(example, monkeypatch):
    for name in list(example) + [name.upper() for name in Settings.model_fields]:
        monkeypatch.delenv(name, raising=False)
    defaults = load_settings()
    for name, value in example.items():
        monkeypatch.setenv(name, value)
    assert load_settings() == defaults


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_STATEMENT_TIMEOUT_MS", "soon"),
        ("DATABASE_CONNECT_TIMEOUT", "0"),
        ("REQUIRE_IF_MATCH", "perhaps"),
        ("IPV6_CLIENT_PREFIX", "129"),
        ("DELETED_STORE_RETENTION_DAYS", "-1"),
        # Standbys of the SQLite default: there is no such thing.
        ("DATABASE_REPLICA_URLS", "postgresql://u@standby/d"),
        ("DATABASE_REPLICA_MAX_LAG_SECONDS", "0"),
    ],
)
def test_a_bad_variable_stops_the_start_naming_it(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=rf"{variable}: .*\(got '{value}'\)"):
        create_app()


def test_settings_are_frozen():
    with pytest.raises(ValueError, match="frozen"):
        Settings().require_if_match = True  # type: ignore[misc]


def test_host_style_urls_select_a_driver():
    assert Settings(database_url="postgres://u@h/d").database_url.startswith("postgresql+psycopg2")


def test_replica_urls_are_a_list_each_with_a_driver():
    settings = Settings(
        database_url="postgresql://u@primary/d",
        database_replica_urls=" postgres://u@one/d, postgresql+psycopg://u@two/d ,",
    )
    assert settings.replica_urls == [
        "postgresql+psycopg2://u@one/d",
        "postgresql+psycopg://u@two/d",
    ]
    assert Settings().replica_urls == []


def test_create_app_takes_every_setting_from_its_argument_not_the_environment(monkeypatch):
    monkeypatch.setenv("DATABASE_STATEMENT_TIMEOUT_MS", "30000")
    monkeypatch.setenv("MAX_CONTENT_LENGTH", "5")
    app = create_app(
        Settings(database_url="sqlite://", database_statement_timeout_ms=1234),
        TESTING=True,
    )
    assert app.extensions["settings"].database_statement_timeout_ms == 1234
    # SQLite's busy timeout is the statement timeout, on both engines.
    with app.app_context():
        for engine in (db.engine, db.engines[READS]):
            assert make_url(str(engine.url)).get_backend_name() == "sqlite"
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]["timeout"] == 1.234
    assert app.config["MAX_CONTENT_LENGTH"] == 5  # from the environment: not overridden


def test_postgresql_timeouts_come_from_the_settings_given():
    settings = Settings(
        database_url="postgresql+psycopg://u@127.0.0.1/d",
        database_connect_timeout=7,
        database_statement_timeout_ms=250,
    )
    app = create_app(settings, TESTING=True)
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]["connect_timeout"] == 7
    reads = app.config["SQLALCHEMY_BINDS"][READS]
    assert reads["connect_args"]["connect_timeout"] == 7
    assert reads["connect_args"]["cursor_factory"].prefix == "SET LOCAL statement_timeout = 250; "
