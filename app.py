import os
from pathlib import Path
from typing import Any

import flask_swagger_ui
from flask import Flask, request, send_from_directory
from flask_migrate import Migrate
from flask_smorest import abort
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from api import Api
from auth import init_auth
from db import (
    READS,
    begin_transactions,
    configure_sqlite,
    cursor_with_timeout,
    db,
    ping_idle_connections,
)
from errors import database_unavailable, unexpected_database_error
from metrics import init_metrics
from request_log import init_request_log
from resources.common import BEARER_AUTH
from resources.health import blp as health_blueprint
from resources.item import blp as item_blueprint
from resources.store import blp as store_blueprint
from resources.tag import blp as tag_blueprint
from resources.user import blp as user_blueprint
from schemas import MAX_ID
from seed import register_seed_command
from user_commands import register_user_commands

MAX_URL_LENGTH = 8192
SWAGGER_UI_ASSETS = Path(flask_swagger_ui.__file__).parent / "dist"


class DatabaseIdConverter(IntegerConverter):
    """An id the database can hold: an id outside 1..2^31-1 is simply not found (404)."""

    def __init__(self, map, *args, **kwargs) -> None:
        super().__init__(map, min=1, max=MAX_ID)


# What postgresql:// (and postgres://) URLs use: both drivers work, and psycopg2 measured
# faster for reads and for writes (bench/run.py; the figures are in the README);
# postgresql+psycopg:// selects psycopg 3.
DEFAULT_POSTGRES_DRIVER = "psycopg2"


def database_url(url: str | None) -> str:
    url = url or os.environ.get("DATABASE_URL") or ""
    # Some hosts hand out the scheme SQLAlchemy dropped in 1.4.
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return f"postgresql+{DEFAULT_POSTGRES_DRIVER}://" + url.removeprefix(scheme)
    return url


def statement_timeout_ms() -> int:
    return int(os.environ.get("DATABASE_STATEMENT_TIMEOUT_MS", "30000"))


def engine_options(url: str) -> dict:
    # An unexpected database error is logged with its SQL, not its values: they can be
    # password hashes and emails.
    options: dict[str, Any] = {"hide_parameters": True}
    driver = make_url(url).get_driver_name()
    if driver == "pysqlite":
        # A writer waits this long for the database lock, then the request answers 503.
        return {**options, "connect_args": {"timeout": statement_timeout_ms() / 1000}}
    if not url.startswith("postgresql"):
        return options
    # A database that is down or stuck answers 503 in seconds instead of hanging workers.
    connect_args: dict[str, Any] = {
        "connect_timeout": int(os.environ.get("DATABASE_CONNECT_TIMEOUT", "3"))
    }
    if driver == "psycopg":
        # psycopg 3 prepares a statement on the server after 5 runs; behind PgBouncer in
        # transaction mode that server connection may belong to another client by then.
        connect_args["prepare_threshold"] = None
    return {**options, "connect_args": connect_args}


def read_engine_options(url: str, options: dict) -> dict:
    """The engine of reads (db.READS): in autocommit, each statement carrying the statement
    timeout (db.cursor_with_timeout)."""
    reads = {"url": url, "isolation_level": "AUTOCOMMIT", **options}
    cursor = cursor_with_timeout(make_url(url).get_driver_name(), statement_timeout_ms())
    if cursor is not None:
        reads["connect_args"] = {**options["connect_args"], "cursor_factory": cursor}
    return reads


def create_app(db_url: str | None = None, **config: Any) -> Flask:
    """The app on `db_url` (else $DATABASE_URL, else SQLite); `config` overrides settings."""
    app = Flask(__name__)
    url = database_url(db_url) or f"sqlite:///{Path(app.instance_path) / 'data.db'}"
    options = engine_options(url)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=url,
        SQLALCHEMY_ENGINE_OPTIONS=options,
        SQLALCHEMY_BINDS={READS: read_engine_options(url, options)},
        MAX_CONTENT_LENGTH=int(os.environ.get("MAX_CONTENT_LENGTH", 1024 * 1024)),
        API_TITLE="Stores REST API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/swagger-ui",
        OPENAPI_SWAGGER_UI_URL="/swagger-ui-assets/",
        TRUSTED_PROXIES=int(os.environ.get("TRUSTED_PROXIES", "0")),
        DELETED_STORE_RETENTION_DAYS=float(os.environ.get("DELETED_STORE_RETENTION_DAYS", "30")),
        IDEMPOTENCY_KEY_HOURS=float(os.environ.get("IDEMPOTENCY_KEY_HOURS", "24")),
        REQUIRE_IF_MATCH=os.environ.get("REQUIRE_IF_MATCH", "false").lower() == "true",
        **config,
    )
    if app.config["TRUSTED_PROXIES"]:
        # The client's address is what the nearest trusted proxy saw. With none (the
        # default), X-Forwarded-For is ignored: any client could write it.
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    Path(app.instance_path).mkdir(exist_ok=True)
    init_request_log(app)
    init_auth(app)

    @app.before_request
    def refuse_overlong_urls() -> None:
        if len(request.full_path) > MAX_URL_LENGTH:
            abort(414, message=f"Keep the URL under {MAX_URL_LENGTH} characters.")

    # Every integer in our URLs is a database id.
    app.url_map.converters["int"] = DatabaseIdConverter
    db.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            ping_idle_connections(engine)
            configure_sqlite(engine)
        begin_transactions(db.engine, statement_timeout_ms())
        init_metrics(app, db.engines)
    # Batch mode: SQLite can only alter a table by copying it.
    Migrate(app, db, render_as_batch=True)
    register_seed_command(app)
    register_user_commands(app)

    api = Api(app)
    app.register_error_handler(OperationalError, database_unavailable)
    app.register_error_handler(DBAPIError, unexpected_database_error)
    api.register_converter(
        DatabaseIdConverter,
        lambda _converter: {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    )
    api.spec.components.security_scheme(
        BEARER_AUTH, {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    for blueprint in (
        store_blueprint,
        item_blueprint,
        tag_blueprint,
        user_blueprint,
        health_blueprint,
    ):
        api.register_blueprint(blueprint)

    @app.get("/swagger-ui-assets/<path:filename>")
    def swagger_ui_assets(filename: str):
        # Served by us so that Swagger UI works offline, with no CDN.
        return send_from_directory(SWAGGER_UI_ASSETS, filename)

    return app
