"""Who is calling: passwords, JWTs and their revocation, the login rate limit."""

import math
import os
import secrets
import time
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, current_app, g, request
from flask_jwt_extended import JWTManager, create_access_token, create_refresh_token
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from flask_limiter.util import get_remote_address
from sqlalchemy import select

from db import READ_METHODS, db
from errors import ErrorResponse, error_response
from models import RevokedTokenModel, UserModel

MIN_SECRET_BYTES = 32
MAKE_A_SECRET = "python3 -c 'import secrets; print(secrets.token_hex(32))'"
BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}
REVOKED = "The token has been revoked: log in again with POST /login."

jwt = JWTManager()


def login_attempt_key() -> str:
    """Login attempts are counted per client address and username."""
    body = request.get_json(silent=True)
    username = body.get("username") if isinstance(body, dict) else None
    return f"{get_remote_address()}/{username if isinstance(username, str) else ''}"


limiter = Limiter(login_attempt_key)


@limiter.request_filter
def reads_are_never_limited() -> bool:
    # Only POST /login is limited, yet Flask-Limiter checks every request: skipping the
    # check for GET and HEAD saves a tenth of a read's time in the app (measured in-process).
    return request.method in READ_METHODS


def init_auth(app: Flask) -> None:
    app.config.setdefault("PASSWORD_HASHER", PasswordHasher())
    app.config.setdefault(
        "JWT_ACCESS_TOKEN_EXPIRES",
        timedelta(minutes=int(os.environ.get("JWT_ACCESS_TOKEN_MINUTES", "15"))),
    )
    app.config.setdefault(
        "JWT_REFRESH_TOKEN_EXPIRES",
        timedelta(days=int(os.environ.get("JWT_REFRESH_TOKEN_DAYS", "30"))),
    )
    app.config.setdefault("JWT_SECRET_KEY", os.environ.get("JWT_SECRET_KEY", ""))
    app.config.setdefault("LOGIN_RATE_LIMIT", os.environ.get("LOGIN_RATE_LIMIT", "10/minute"))
    app.config.setdefault(
        "RATELIMIT_STORAGE_URI", os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    )
    # An unreachable Redis must not lock everybody out, nor let guessing run unlimited.
    app.config["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"] = True
    require_strong_secret(app)
    jwt.init_app(app)
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, too_many_attempts)


def require_strong_secret(app: Flask) -> None:
    if len(app.config["JWT_SECRET_KEY"].encode()) >= MIN_SECRET_BYTES:
        return
    if not (app.debug or app.testing):
        raise RuntimeError(
            f"JWT_SECRET_KEY is missing or shorter than {MIN_SECRET_BYTES} bytes: anyone could "
            f"forge tokens. Set it to a random secret, e.g. the output of: {MAKE_A_SECRET}"
        )
    app.logger.warning(
        "JWT_SECRET_KEY is missing or short: using a random one, so tokens die with this process."
    )
    app.config["JWT_SECRET_KEY"] = secrets.token_hex(MIN_SECRET_BYTES)


def password_hasher() -> PasswordHasher:
    return current_app.config["PASSWORD_HASHER"]


def new_user(account: dict[str, str]) -> UserModel:
    """A user from the fields POST /register takes; the password is kept as its hash only."""
    fields = dict(account)
    password = fields.pop("password")
    return UserModel(**fields, password_hash=password_hasher().hash(password))


@cache
def unmatchable_hash(hasher: PasswordHasher) -> str:
    return hasher.hash(secrets.token_hex(16))


def check_password(user: UserModel | None, password: str) -> bool:
    """Whether `password` is the user's; upgrades a hash made with older parameters."""
    hasher = password_hasher()
    # An unknown username costs a verification too, so that timing does not tell
    # which usernames exist.
    try:
        hasher.verify(user.password_hash if user else unmatchable_hash(hasher), password)
    except (VerificationError, InvalidHashError):
        return False
    if user is None:
        return False
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    return True


def issue_tokens(user: UserModel, *, fresh: bool) -> dict[str, str]:
    claims = {"ver": user.token_version}
    identity = str(user.id)
    return {
        "access_token": create_access_token(identity, fresh=fresh, additional_claims=claims),
        "refresh_token": create_refresh_token(identity, additional_claims=claims),
    }


def revoke(token: dict[str, Any]) -> None:
    """Revoke a decoded token, in the current transaction."""
    expires_at = datetime.fromtimestamp(token["exp"], UTC)
    db.session.add(RevokedTokenModel(jti=token["jti"], expires_at=expires_at))


def too_many_attempts(error: RateLimitExceeded) -> ErrorResponse:
    # Flask-Limiter's own headers would put a Retry-After on every answer, even a 200.
    limit = limiter.current_limit
    wait = math.ceil(limit.reset_at - time.time()) if limit else 60
    return error_response(429, error.description, {"Retry-After": str(max(wait, 1))})


def unauthorized(message: str) -> ErrorResponse:
    return error_response(401, message, BEARER_CHALLENGE)


@jwt.token_in_blocklist_loader
def is_revoked(_header: dict, token: dict) -> bool:
    # One round trip checks the token and loads its user, for token_user below
    # (Flask-JWT-Extended asks this first).
    listed = select(RevokedTokenModel.jti).where(RevokedTokenModel.jti == token["jti"]).exists()
    found = db.session.execute(
        select(UserModel, listed).where(UserModel.id == int(token["sub"]))
    ).first()
    if found is None:
        g.token_user = None
        return False
    user, revoked = found
    # A user who logged out everywhere raised token_version past the token's.
    g.token_user = user if user.token_version == token.get("ver") else None
    return revoked


@jwt.user_lookup_loader
def token_user(_header: dict, _token: dict) -> UserModel | None:
    return g.pop("token_user", None)


@jwt.unauthorized_loader
def token_missing(reason: str):
    return unauthorized(
        f"{reason}. Log in with POST /login and send the access token as "
        "'Authorization: Bearer <token>'."
    )


@jwt.invalid_token_loader
def token_invalid(reason: str):
    return unauthorized(f"Invalid token: {reason}.")


@jwt.expired_token_loader
def token_expired(_header: dict, token: dict):
    if token["type"] == "refresh":
        return unauthorized("The refresh token has expired: log in again with POST /login.")
    return unauthorized("The access token has expired: get a new one with POST /refresh.")


@jwt.revoked_token_loader
def token_revoked(_header: dict, _token: dict):
    return unauthorized(REVOKED)


@jwt.user_lookup_error_loader
def token_user_gone(_header: dict, _token: dict):
    return unauthorized(
        "The token's user was deleted or logged out everywhere: log in again with POST /login."
    )


@jwt.needs_fresh_token_loader
def token_not_fresh(_header: dict, _token: dict):
    return unauthorized(
        "This needs a fresh token, one from POST /login: a refreshed token is not enough."
    )
