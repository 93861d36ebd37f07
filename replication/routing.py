"""Which database serves a GET's reads, so that every client still reads its own writes, and
a client that says who it is never reads an older state than it was answered before.

A GET or HEAD reads from a hot standby that serves (replication.replicas: up, within
DATABASE_REPLICA_MAX_LAG_SECONDS); everything else, and a security check in a GET
(db.read_current), stays on the primary.

Read your writes, after GitLab's database load balancing: a write that answers 2xx records,
in its own transaction, that its user wrote (recent_writes). A later GET of that user (by its
bearer token, or by the signed cookie a write set, which lasts as long as a login: Swagger UI
sends no token with public GETs) asks the primary, in one indexed look-up, for its WAL insert
position if the user wrote within the last WINDOW; a standby serves that read only once it has
replayed past it, else the primary does. Past the window every standby that still serves has
replayed the write anyway. A standby that fails a read (down, past
DATABASE_REPLICA_TIMEOUT_SECONDS, or a query cancelled by recovery) is retried on the primary,
in the same request: the client sees no error.

Monotonic reads, for a reader known by token or cookie, across workers and instances: each
process keeps its own view of which standbys serve (its own checks), and standbys replay at
different paces, so a reader must not move between standbys. It reads from one home standby,
picked by its user id among DATABASE_REPLICA_URLS (the same list everywhere, whichever
serve), or from the primary: never another standby, which may be behind what its home showed
it. A read the primary answers (the home does not serve here, has not replayed the reader's
position, or failed the read) shows the primary's newest state, so it is noted like a write,
before the answer leaves: within the window, the next look-up (any process's) asks the home
for the primary's position then; past it, a home that serves has replayed that state (the
window's argument). A standby's replay only goes forward: reads from the home are monotonic
in themselves. The normal read still costs one look-up; only reads answered by the primary
write a note (at most once a second per user and process). An anonymous read goes to the
standby its address hashes to among those that serve, which may move when that set changes.
"""

import logging
import re
import zlib
from collections.abc import Callable

import jwt
from flask import Flask, Response, current_app, g, request
from flask_jwt_extended import decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import Engine, Text, bindparam, cast, func, select
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from config.settings import Settings
from connections.deadlines import past_deadline
from connections.options import engine_options, read_engine_options
from db import READS, ROUTING, db
from models import RecentWriteModel
from observability.metrics import REPLICA_REFUSED, count_read, count_read_fallback, show_replica
from replication.notes import COOKIE, NOTED_EVERY_SECONDS, Notes, note
from replication.replicas import REFUSALS, STALE_AFTER_SECONDS, Replica, Replicas, lsn

logger = logging.getLogger("stores.replicas")

# The WAL of a committed write reaches the standbys' stream once flushed: at once under
# synchronous_commit, within wal_writer_delay (200 ms) without it.
FLUSHED_WITHIN_SECONDS = 1.0
RECOVERY_CONFLICT = "40001"


def replica_names(settings: Settings) -> list[str]:
    """The binds of the standbys' engines: replica1, replica2, ..., in DATABASE_REPLICA_URLS'
    order."""
    return [f"replica{number}" for number in range(1, len(settings.replica_urls) + 1)]


def replica_binds(settings: Settings) -> dict[str, dict]:
    """Flask-SQLAlchemy binds of the standbys' engines, each like the engine of reads (in
    autocommit, with the statement timeout), every statement cut off by our own clock at
    DATABASE_REPLICA_TIMEOUT_SECONDS."""
    timeout = settings.database_statement_timeout_ms
    deadline = settings.database_replica_timeout_seconds
    return {
        name: read_engine_options(
            url, engine_options(url, settings.database_connect_timeout, timeout), timeout, deadline
        )
        for name, url in zip(replica_names(settings), settings.replica_urls, strict=True)
    }


def init_replication(app: Flask, settings: Settings) -> None:
    """Route GETs' reads to the standbys of DATABASE_REPLICA_URLS; none: nothing changes."""
    names = replica_names(settings)
    if not names:
        return
    replicas = [Replica(name, db.engines[name]) for name in names]
    app.extensions[ROUTING] = Routing(
        Replicas(db.engines[READS], replicas, settings.database_replica_max_lag_seconds),
        app.config["JWT_SECRET_KEY"],
        # The cookie says only whose the reads are (never what they may do): it lasts as long
        # as a login, so that a client that keeps it keeps its reads monotonic.
        settings.jwt_refresh_token_days * 86400,
    )


class Routing:
    def __init__(self, replicas: Replicas, secret: str, cookie_seconds: int) -> None:
        # The primary's engine of reads: the one the checks sample, and the one reads fall
        # back to.
        self.replicas, self.primary = replicas, replicas.primary
        replicas.on_check = show_checked
        # A standby that serves has replayed all the primary flushed up to the maximum lag
        # before its last check, which is at most STALE_AFTER_SECONDS old.
        self.window_seconds = (
            replicas.max_lag_seconds
            + STALE_AFTER_SECONDS
            + FLUSHED_WITHIN_SECONDS
            + NOTED_EVERY_SECONDS
        )
        self.notes = Notes()
        self.cookies = URLSafeTimedSerializer(secret, salt="read-your-writes")
        self.cookie_seconds = cookie_seconds
        window = func.make_interval(0, 0, 0, 0, 0, 0, self.window_seconds)
        self.writer_position = select(cast(func.pg_current_wal_insert_lsn(), Text)).where(
            RecentWriteModel.user_id == bindparam("user_id"),
            RecentWriteModel.written_at > func.clock_timestamp() - window,
        )

    def engine_for_request(self) -> Engine:
        """The engine of this GET's reads: a standby's, or the primary's (READS)."""
        reader = self.reader()
        if reader is None:
            return self.anonymous_engine()
        g.reader = reader
        home = self.home_of(reader)
        if not self.replicas.serves(home):
            return self.on_primary(why_none_serves([home]))
        position = self.position_to_read(reader)
        if position is not None:
            try:
                if not home.has_replayed(position):
                    return self.on_primary("read_your_writes")
            except DBAPIError as error:
                home.lost()
                return self.on_primary(failure(error))
        g.reads_replica = home
        return home.engine

    def home_of(self, reader: int) -> Replica:
        """The reader's standby: by its user id among all of DATABASE_REPLICA_URLS, not among
        those that serve, which each process sees on its own."""
        return self.replicas.all[zlib.crc32(str(reader).encode()) % len(self.replicas.all)]

    def anonymous_engine(self) -> Engine:
        """The standby the client's address hashes to among those that serve: the same one
        while that set stays as it is."""
        serving = self.replicas.serving()
        if not serving:
            return self.on_primary(why_none_serves(self.replicas.all))
        chosen = serving[zlib.crc32((request.remote_addr or "").encode()) % len(serving)]
        g.reads_replica = chosen
        return chosen.engine

    def on_primary(self, reason: str) -> Engine:
        count_read_fallback(reason)
        return self.primary

    def reader(self) -> int | None:
        """Whose read this is, if it says: by a valid bearer token, or by the cookie of a
        write (unforgeable: signed with JWT_SECRET_KEY)."""
        if token := bearer_token():
            try:
                # An expired token still says, unforgeably, whose the read is: routing is no
                # authorization, and a client between a token's expiry and its refresh keeps
                # its reads.
                return int(decode_token(token, allow_expired=True)["sub"])
            except (jwt.PyJWTError, JWTExtendedException, KeyError, ValueError):
                pass  # not a token of ours: the read is anonymous
        if cookie := request.cookies.get(COOKIE):
            try:
                return int(self.cookies.loads(cookie, max_age=self.cookie_seconds))
            except (BadSignature, ValueError):
                pass
        return None

    def position_to_read(self, user_id: int) -> int | None:
        """The WAL position a standby must have replayed to show all the user's writes; None
        if the user wrote nothing within the window."""
        with self.primary.connect() as connection:
            position = connection.scalar(self.writer_position, {"user_id": user_id})
        return None if position is None else lsn(position)

    def answered(self, dispatch: Callable[[], Response]) -> Response:
        """The GET's answer (retried_on_the_primary); a known reader's answered from the
        primary, a refusal such as a 404 included, is noted like a write before it leaves."""
        try:
            response = self.retried_on_the_primary(dispatch)
        except HTTPException:
            self.note_primary_read()
            raise
        self.note_primary_read()
        return response

    def retried_on_the_primary(self, dispatch: Callable[[], Response]) -> Response:
        """The GET's answer; if a standby failed its reads, the primary's, as if the standby
        had never been chosen. Counted once, as read by whichever database answered."""
        try:
            return dispatch()
        except DBAPIError as error:
            replica = g.pop("reads_replica", None)
            if replica is None:
                raise
            reason = failure(error)
            if reason != "conflict":
                replica.lost()
            logger.warning("database replica %s failed a read (%s), retried on the primary: %s",
                           replica.name, reason, type(error.orig).__name__)  # fmt: skip
            db.session.rollback()
            g.reads_engine = self.on_primary(reason)
            return dispatch()
        finally:
            if "reads_engine" in g:  # the GET read something
                replica = g.get("reads_replica")
                count_read(replica.name if replica is not None else "primary")

    def note_primary_read(self) -> None:
        """If a known reader's GET read from the primary, note it, committed at once (the
        engine of reads is in autocommit): its next reads must not show an older state."""
        reader = g.get("reader")
        on_primary = g.get("reads_engine") is self.primary or g.get("read_the_primary", False)
        if reader is None or not on_primary:
            return
        noting = self.notes.due(reader)
        if noting is None:
            return
        with self.primary.connect() as connection:
            connection.execute(note(reader))
        self.notes.taken(reader, noting)


def bearer_token() -> str | None:
    """The token of the Authorization header, read as Flask-JWT-Extended reads it (credentials
    split at commas, the scheme and the token at any whitespace): every header the API takes
    a token from names its reader here too (tests/api/test_reader.py)."""
    header = request.headers.get("Authorization", "").strip().strip(",")
    scheme = current_app.config["JWT_HEADER_TYPE"]
    bearers = [
        parts
        for credentials in re.split(r",\s*", header)
        if (parts := credentials.split()) and parts[0] == scheme
    ]
    if len(bearers) == 1 and len(bearers[0]) == 2:
        return bearers[0][1]
    return None


def why_none_serves(replicas: list[Replica]) -> str:
    """Why none of `replicas` serves: down (none answers), refused (each that answers is
    refused), or lag (behind, unchecked lately, or not yet replayed where it failed)."""
    answering = [replica for replica in replicas if replica.up]
    if not answering:
        return "down"
    return "refused" if all(replica.refused is not None for replica in answering) else "lag"


def failure(error: DBAPIError) -> str:
    """Why a standby failed a read: conflict (cancelled for recovery: it is up), timeout (past
    our deadline), or down."""
    if past_deadline(error.orig):
        return "timeout"
    diagnostics = getattr(error.orig, "diag", None)
    if diagnostics is not None and diagnostics.sqlstate == RECOVERY_CONFLICT:
        return "conflict"
    return "down"


def show_checked(replica: Replica) -> None:
    """A check's findings in the metrics: the standby's lag, and whether it is refused."""
    show_replica(replica)
    for reason in REFUSALS:
        REPLICA_REFUSED.labels(replica.name, reason).set(int(replica.refused == reason))
