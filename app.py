"""create_app(): the API, from its settings (config/settings.py) and its parts."""

import inspect
import re
from collections.abc import Callable
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import flask_swagger_ui
from flask import Flask, request, send_from_directory
from flask_jwt_extended import jwt_required
from flask_migrate import Migrate
from flask_smorest import abort
from gunicorn.http.errors import NoMoreData, ParseException
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter
from werkzeug.wsgi import host_is_trusted

from backups.erasures import ErasureLogUnwritableError
from backups.metrics import backup_collectors
from cli import register_commands
from config.settings import Settings, load_settings
from connections.faults import (
    drop_read_only_connections,
    log_server_changes,
    ping_idle_connections,
)
from connections.options import engine_options, read_engine_options
from connections.silence import Silence
from db import READ_METHODS, READS, ROUTING, begin_transactions, configure_sqlite, db
from models.queries import NotFoundError
from observability import init_observability
from replication.routing import init_replication, replica_binds
from resources.catalogue import blp as catalogue_blueprint
from resources.catalogue import may_import_into
from resources.event import blp as event_blueprint
from resources.health import blp as health_blueprint
from resources.item import blp as item_blueprint
from resources.store import blp as store_blueprint
from resources.tag import blp as tag_blueprint
from resources.user import blp as user_blueprint
from resources.webhook import blp as webhook_blueprint
from schemas.events import PurgedStoreSchema
from schemas.field_types import MAX_ID
from security.passwords import init_passwords
from security.throttle import init_throttles
from security.tokens import init_tokens
from web.api import Api
from web.errors import (
    broken_body,
    database_unavailable,
    erasure_log_unwritable,
    missing,
    unexpected_database_error,
)
from web.event_stream import EVENT_HUB, EventHub
from web.headers import init_headers
from web.openapi import BEARER_AUTH

MAX_URL_LENGTH = 8192
# Asked by address (docker compose's healthcheck, Prometheus on every instance), from any
# Host: their answers name no host.
ANY_HOST_ENDPOINTS = {"health.Health", "metrics"}
TOKEN_CHECK_PATH = "/_auth/token"
IMPORT_PATH = re.compile(r"/store/([0-9]+)/item/import")
SWAGGER_UI_ASSETS = Path(flask_swagger_ui.__file__).parent / "dist"


class DatabaseIdConverter(IntegerConverter):
    """An id the database can hold: an id outside 1..2^31-1 is simply not found (404)."""

    def __init__(self, map, *args, **kwargs) -> None:
        super().__init__(map, min=1, max=MAX_ID)


class App(Flask):
    def ensure_sync(self, func: Callable) -> Callable:
        """Flask's documented hook for running async views: it asks, of every view, hook and
        Flask-Smorest wrapper, on every request, whether it is a coroutine function (ten times
        a request, in all as much as ETags cost). A function's answer never changes, and ours
        are all plain: asked once each."""
        if is_coroutine(getattr(func, "__func__", func)):
            return super().ensure_sync(func)
        return func

    def dispatch_request(self):
        """The view's answer; a GET whose hot standby failed its reads is answered again from
        the primary, and a known reader's GET answered from the primary is noted
        (replication.routing)."""
        routing = self.extensions.get(ROUTING)
        if routing is None or request.method not in READ_METHODS:
            return super().dispatch_request()
        return routing.answered(super().dispatch_request)


@cache
def is_coroutine(function: Callable) -> bool:
    return inspect.iscoroutinefunction(function)


def create_app(settings: Settings | None = None, **config: Any) -> Flask:
    """The app with `settings` (by default, the environment's); `config` sets Flask's own
    configuration (TESTING, a PASSWORD_HASHER, ...)."""
    settings = settings or load_settings()
    app = App(__name__)
    app.extensions["settings"] = settings
    # The process's one reader of the feed for its live streams (web/event_stream.py).
    app.extensions[EVENT_HUB] = EventHub(app)
    url = settings.database_url or f"sqlite:///{Path(app.instance_path) / 'data.db'}"
    options = engine_options(
        url, settings.database_connect_timeout, settings.database_statement_timeout_ms
    )
    app.config.update(
        SQLALCHEMY_DATABASE_URI=url,
        SQLALCHEMY_ENGINE_OPTIONS=options,
        SQLALCHEMY_BINDS={
            READS: read_engine_options(url, options, settings.database_statement_timeout_ms),
            **replica_binds(settings),
        },
        MAX_CONTENT_LENGTH=settings.max_content_length,
        API_TITLE="Stores REST API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/swagger-ui",
        OPENAPI_SWAGGER_UI_URL="/swagger-ui-assets/",
        **config,
    )
    if settings.trusted_proxies:
        # The client's address is what the nearest trusted proxy saw. With none (the
        # default), X-Forwarded-For is ignored: any client could write it.
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    Path(app.instance_path).mkdir(exist_ok=True)
    init_passwords(app)
    init_throttles(app, settings)
    init_tokens(app, settings)
    init_headers(app)

    # Every integer in our URLs is a database id.
    app.url_map.converters["int"] = DatabaseIdConverter
    db.init_app(app)
    with app.app_context():
        # The primary's engines (writes, and reads) fail at once while it is silent; a
        # standby's are left out of the reads by replication.routing instead.
        primary = (db.engine, db.engines[READS])
        silence = Silence() if url.startswith("postgresql") else None
        for engine in db.engines.values():
            guarded = silence if engine in primary else None
            ping_idle_connections(engine, silence=guarded)
            if guarded is not None:
                guarded.guard(engine)
            drop_read_only_connections(engine)
            configure_sqlite(engine)
        begin_transactions(db.engine, settings.database_statement_timeout_ms)
        log_server_changes(db.engine)
        init_replication(app, settings)
        init_observability(app, db.engines, backup_collectors(settings, url, options))

    @app.before_request
    def refuse_overlong_urls() -> None:
        # The path and query as they came, counted without building the URL.
        environ = request.environ
        if (
            len(environ.get("PATH_INFO", "")) + len(environ.get("QUERY_STRING", ""))
            >= MAX_URL_LENGTH
        ):
            abort(414, message=f"Keep the URL under {MAX_URL_LENGTH} characters.")

    allowed_hosts = settings.allowed_host_list

    # The verdict on each Host seen lately, kept: clients send the same few, and deciding
    # (each allowed name IDNA-encoded, on every request) cost a hundredth of GET /store/<id>.
    @lru_cache(maxsize=256)
    def trusted(host: str) -> bool:
        # In lower case, and without a final dot ("localhost.:8000"): the same host (DNS).
        return host_is_trusted(host.lower().replace(".:", ":").removesuffix("."), allowed_hosts)

    @app.before_request
    def refuse_other_hosts() -> None:
        # Links are built from the Host (or X-Forwarded-Host, from a trusted proxy): another
        # one would have them point elsewhere, in the answer and in any cache that keeps it.
        if not trusted(request.host) and request.endpoint not in ANY_HOST_ENDPOINTS:
            abort(400, message=f"This API is not served at {request.host!r} (ALLOWED_HOSTS).")

    # Batch mode: SQLite can only alter a table by copying it.
    Migrate(app, db, render_as_batch=True)
    register_commands(app)

    api = Api(app)
    app.register_error_handler(NotFoundError, missing)
    app.register_error_handler(OperationalError, database_unavailable)
    app.register_error_handler(ErasureLogUnwritableError, erasure_log_unwritable)
    # Raised while a view reads the body, under gunicorn (NoMoreData: the body ended early).
    app.register_error_handler(ParseException, broken_body)
    app.register_error_handler(NoMoreData, broken_body)
    app.register_error_handler(DBAPIError, unexpected_database_error)
    api.register_converter(
        DatabaseIdConverter,
        lambda _converter: {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    )
    api.spec.components.security_scheme(
        BEARER_AUTH, {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    # Named by events' data (schemas/events.py), answered by no view.
    api.spec.components.schema("PurgedStore", schema=PurgedStoreSchema)
    for blueprint in (
        store_blueprint,
        item_blueprint,
        catalogue_blueprint,
        tag_blueprint,
        user_blueprint,
        event_blueprint,
        webhook_blueprint,
        health_blueprint,
    ):
        api.register_blueprint(blueprint)

    @app.get("/swagger-ui-assets/<path:filename>")
    def swagger_ui_assets(filename: str):
        # Served by us so that Swagger UI works offline, with no CDN.
        return send_from_directory(SWAGGER_UI_ASSETS, filename)

    @app.get(TOKEN_CHECK_PATH)
    @jwt_required()
    def token_check() -> tuple[str, int]:
        # nginx asks this, with an upload's headers and path and none of its body, before it
        # takes the body (deploy/nginx/nginx.conf, auth_request): a valid access token, not
        # revoked, of the store's owner or an admin; 403 for a store that is not theirs or
        # not there (nginx's auth_request takes 2xx, 401 and 403 alone).
        # Out of the OpenAPI spec: nginx's, not the clients'.
        upload = IMPORT_PATH.fullmatch(request.headers.get("X-Original-URI", "").partition("?")[0])
        if upload is not None and not may_import_into(int(upload[1])):
            return "", 403
        return "", 204

    return app
