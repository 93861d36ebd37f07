"""Idempotency keys: a client that lost the answer to a POST sends it again with the same
`Idempotency-Key` and gets the first answer again (marked `Idempotent-Replayed: true`)
instead of a second store or item. As Stripe does, and the IETF draft "The Idempotency-Key
HTTP Header Field" describes.

Hand-written: the Flask packages for it keep answers in a cache (Redis) written after the
request, so a crash between the write's commit and the cache's write loses the answer and
lets the retry write again. Here the answer is kept in the write's own transaction: both
are there, or neither.
"""

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from flask import Response, current_app, g, request
from flask_jwt_extended import current_user
from flask_smorest import abort
from sqlalchemy import Executable, Result, select
from sqlalchemy.orm import SessionTransaction

from config.settings import current_settings
from db import db, prune, read_outside_transactions, took_advisory_lock, upsertable_insert
from models import IdempotencyKeyModel
from security.throttle import client_of
from web.bodies import body_to_fingerprint

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
REPLAYED_HEADER = {
    REPLAYED: {
        "description": "true: this is the kept answer to an earlier request with the same "
        f"{HEADER}, which ran; this one ran nothing",
        "schema": {"type": "string", "enum": ["true"]},
    }
}
# What an answer is, besides its status and body.
KEPT_HEADERS = ("Content-Type", "Location", "Link")
# A request with the key is still running: most of ours take milliseconds.
RETRY_AFTER_SECONDS = 1
# Expired keys each keyed write removes: the table stays as small as the keys still kept,
# without cron.
PRUNE_BATCH = 500


class Replayed(Exception):  # noqa: N818 - not an error: the way out with the kept answer
    """The request was answered before: its kept answer is the answer."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


def fingerprint() -> str:
    """What makes two requests the same one: method, path with query, media type and body,
    byte for byte, or its digest if spooled (each part's length first, so that no two requests run
    together the same).

    Keyed with the app's secret: the body of POST /register holds a password, which a plain
    hash kept for a day would let anyone who reads the table guess at, fast.
    """
    digest = hmac.new(current_app.config["JWT_SECRET_KEY"].encode(), digestmod=hashlib.sha256)
    # The media type too: the same bytes as CSV and as JSON Lines are two files.
    for part in (request.method, request.full_path, request.mimetype, body_to_fingerprint()):
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


@dataclass
class Claim:
    """A request's key, to be answered once."""

    scope: str
    key: str
    fingerprint: str
    # The transaction that holds the key, once it does.
    transaction: SessionTransaction | None = None

    def replay_if_kept(self, execute: Callable[[Executable], Result]) -> None:
        """Raise Replayed with the kept answer to this key; 422 if that answered another
        request."""
        kept = execute(
            select(IdempotencyKeyModel).where(
                IdempotencyKeyModel.scope == self.scope,
                IdempotencyKeyModel.key == self.key,
                IdempotencyKeyModel.expires_at > time.time(),
            )
        ).scalar()
        if kept is None:
            return
        if kept.fingerprint != self.fingerprint:
            abort(
                422,
                message=f"This {HEADER} was used for another request (another method, path "
                "or body): send a new key with each new request, and the same key only to "
                "retry the very same request.",
            )
        response = current_app.response_class(kept.body, status=kept.status)
        response.headers.update(json.loads(kept.headers))
        response.headers[REPLAYED] = "true"
        raise Replayed(response)

    def take(self) -> None:
        """Hold the key in the current transaction until it ends: a request with it
        meanwhile is refused (409), and, the lock taken, the key is looked up again, as
        one that just finished has kept its answer (Replayed). On SQLite, every write
        transaction holds the database's write lock (BEGIN IMMEDIATE) already."""
        if self.transaction is not None and self.transaction is db.session().get_transaction():
            return
        with db.session.no_autoflush:
            postgres = db.session.get_bind().dialect.name == "postgresql"
            if postgres and not took_advisory_lock(f"{self.scope} {self.key}"):
                db.session.rollback()
                abort(
                    409,
                    message=f"A request with this {HEADER} is still running: retry it "
                    "after Retry-After seconds to get its answer.",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
            self.replay_if_kept(db.session.execute)
        self.transaction = db.session().get_transaction()

    def keep(self, response: Response) -> None:
        """Keep `response` as this key's answer, in the current transaction; and drop
        expired keys, a batch at a time (no cron needed)."""
        now = time.time()
        answer = {
            "fingerprint": self.fingerprint,
            "status": response.status_code,
            "headers": json.dumps(
                {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
            ),
            "body": response.get_data(as_text=True),
            "expires_at": now + current_settings().idempotency_key_hours * 3600,
        }
        insert = upsertable_insert(IdempotencyKeyModel).values(
            scope=self.scope, key=self.key, **answer
        )
        # A row left there is an expired one (take() found none alive): replaced.
        db.session.execute(
            insert.on_conflict_do_update(
                index_elements=[IdempotencyKeyModel.scope, IdempotencyKeyModel.key], set_=answer
            )
        )
        prune_expired(now, PRUNE_BATCH)


def prune_expired(now: float | None = None, batch: int | None = None) -> int:
    """Drop keys past their IDEMPOTENCY_KEY_HOURS: a key sent again after that runs again."""
    now = time.time() if now is None else now
    return prune(IdempotencyKeyModel, IdempotencyKeyModel.expires_at <= now, batch=batch)


def hold_pending_key() -> None:
    """Hold the current request's key, if it has one, in the transaction now open."""
    if (claim := g.get("idempotency")) is not None:
        claim.take()


def answer_once(scope: str, key: str, run: Callable[[], Response]) -> Response:
    """`run`'s answer, kept under (`scope`, `key`) in its own write's transaction, which
    web.transactions.committed then commits; or the answer kept before, without running
    anything. Failed requests (4xx) wrote nothing and keep nothing: their retry runs again.
    """
    claim = g.idempotency = Claim(scope, key, fingerprint())
    try:
        # A request never waits for a second server connection while it holds one: behind
        # a pool (PgBouncer's) as small as twice the workers, they would all wait for each
        # other. With a transaction open (a token's check), the key is taken in it at once,
        # before the view looks at anything; with none (a sign-up, which counts an attempt
        # and hashes before it writes), it is looked up outside any, and taken by the write.
        if db.session().in_transaction():
            claim.take()
        else:
            claim.replay_if_kept(read_outside_transactions)
        response = run()
        if response.status_code < 400:
            claim.take()  # held already, by the transaction of the view's write
            claim.keep(response)
    except Replayed as replayed:
        db.session.rollback()
        return replayed.response
    finally:
        del g.idempotency
    return response


def user_scope() -> str:
    """Whose Idempotency-Keys a request's is among: its user's."""
    return f"user:{current_user.id}"


def address_scope() -> str:
    """Whose Idempotency-Keys a request with no user is among: its client address's."""
    return f"address:{client_of(request.remote_addr)}"


def keyed(view: Callable[..., Response], scope: Callable[[], str]) -> Callable[..., Response]:
    """`view`, answered once per Idempotency-Key (parsed into `idempotency_key`) of `scope`."""

    @wraps(view)
    def once(*args, idempotency_key: str | None = None, **kwargs) -> Response:
        if idempotency_key is None:
            return view(*args, **kwargs)
        return answer_once(scope(), idempotency_key, lambda: view(*args, **kwargs))

    return once
