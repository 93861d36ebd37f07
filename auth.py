"""Who is calling: passwords, JWTs and their revocation, the login and sign-up throttles."""

import os
import secrets
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, Response, current_app, g, request
from flask_jwt_extended import JWTManager, create_access_token, create_refresh_token
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import select

from db import db, insert_missing
from errors import ErrorResponse, error_response
from models import RevokedTokenFamilyModel, RevokedTokenModel, UserModel
from throttle import Counted, Limit, client_of

MIN_SECRET_BYTES = 32
MAKE_A_SECRET = "python3 -c 'import secrets; print(secrets.token_hex(32))'"
BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}
REVOKED = "The token has been revoked: log in again with POST /login."

jwt = JWTManager()
T = TypeVar("T")


def throttle_limits(config: dict) -> dict[str, Limit]:
    """What is throttled, and how much (see the README, "Security"), by name.

    As OWASP's Authentication Cheat Sheet has it: per account *and* client, so that an
    attacker's guesses slow down the attacker and not the account's owner elsewhere; per
    account across unknown clients, against guessing from many addresses; and a client
    that logged in to the account before (its device cookie) has an allowance of its own,
    which nobody else's guesses use up.
    """
    per_client = config["LOGIN_ATTEMPTS_PER_ACCOUNT"]
    limits = (
        # A growing delay, up to 15 minutes; a right password clears it.
        Limit("login-account-client", per_client, max_wait=900, forgotten_on_success=True),
        Limit("login-device", per_client, max_wait=900, forgotten_on_success=True),
        # Until the hour is over: many clients guessing one account, or one client
        # guessing many accounts. Right logins are not counted.
        Limit("login-account", config["LOGIN_ATTEMPTS_PER_ACCOUNT_FROM_NEW_CLIENTS"]),
        Limit("login-address", config["LOGIN_ATTEMPTS_PER_ADDRESS"]),
        # Each sign-up costs an Argon2 hash (0.1 s of CPU, 64 MiB).
        Limit("register-address", config["REGISTRATIONS_PER_ADDRESS"]),
    )
    return {each.name: each for each in limits}


def login_counts(username: str, device: str | None) -> list[Counted]:
    """What a login attempt for `username` counts against: a known device's own allowance,
    or, from any other client, the account from that client, the account from all unknown
    clients, and the client's address."""
    if device is not None:
        return [(limit("login-device"), device)]
    client = client_of(request.remote_addr)
    return [
        (limit("login-account-client"), f"{username} {client}"),
        (limit("login-account"), username),
        (limit("login-address"), client),
    ]


DEVICE_COOKIE = "device"
DEVICE_COOKIE_SECONDS = 365 * 86400  # a year


def device_cookies() -> URLSafeTimedSerializer:
    # Signed, not a JWT: it proves only that this client logged in to one account once.
    return URLSafeTimedSerializer(current_app.config["JWT_SECRET_KEY"], salt="login-device")


def new_device_cookie(username: str) -> str:
    """A device cookie (OWASP): this client logged in to `username`, as device <random id>."""
    return device_cookies().dumps([username, secrets.token_hex(16)])


def remember_device(response: Response, username: str) -> Response:
    """Give the client of a right login to `username` a device cookie, for its next login."""
    response.set_cookie(
        DEVICE_COOKIE,
        new_device_cookie(username),
        max_age=DEVICE_COOKIE_SECONDS,
        path="/login",
        secure=request.is_secure,
        httponly=True,
        samesite="Strict",
    )
    return response


def known_device(cookie: str | None, username: str) -> str | None:
    """The device id of a valid, unexpired device cookie given at a login to `username`."""
    if not cookie:
        return None
    try:
        owner, device = device_cookies().loads(cookie, max_age=DEVICE_COOKIE_SECONDS)
    except BadData:
        return None
    return device if owner == username else None


def limit(name: str) -> Limit:
    return current_app.extensions["throttle_limits"][name]


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
    for name, default in (
        ("LOGIN_ATTEMPTS_PER_ACCOUNT", "5"),
        ("LOGIN_ATTEMPTS_PER_ACCOUNT_FROM_NEW_CLIENTS", "100"),
        ("LOGIN_ATTEMPTS_PER_ADDRESS", "30"),
        ("REGISTRATIONS_PER_ADDRESS", "10"),
        ("IPV6_CLIENT_PREFIX", "64"),
    ):
        app.config.setdefault(name, int(os.environ.get(name, default)))
    app.extensions["throttle_limits"] = throttle_limits(app.config)
    require_strong_secret(app)
    jwt.init_app(app)


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


# How much lower the CPU priority of password hashing is (a nice value, 0-19).
HASHING_NICENESS = 10


@cache  # one per process, made at first use: in each gunicorn worker, after the fork
def hashing_thread() -> ThreadPoolExecutor:
    """A thread of lower CPU priority for Argon2: a login's hash keeps the machine's cores
    busy for a tenth of a second (argon2-cffi hashes on 4 threads, which inherit this
    one's priority), and the requests other workers serve meanwhile go first (figures in
    the README). Alone on the machine, it runs as fast as ever."""
    return ThreadPoolExecutor(1, thread_name_prefix="argon2", initializer=lower_own_priority)


def lower_own_priority() -> None:
    # Linux keeps a nice value per thread: this lowers the calling thread's only.
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


def hashing(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)`, a hash or a check of a password, at hashing priority."""
    return hashing_thread().submit(function, *args).result()


def new_user(account: dict[str, str]) -> UserModel:
    """A user from the fields POST /register takes; the password is kept as its hash only."""
    fields = dict(account)
    password = fields.pop("password")
    return UserModel(**fields, password_hash=hashing(password_hasher().hash, password))


@cache
def unmatchable_hash(hasher: PasswordHasher) -> str:
    return hasher.hash(secrets.token_hex(16))


def check_password(user: UserModel | None, password: str) -> bool:
    """Whether `password` is the user's. Seconds of CPU: call it holding no transaction."""
    hasher = password_hasher()
    # An unknown username costs a verification too, so that timing does not tell
    # which usernames exist.
    try:
        hashing(hasher.verify, user.password_hash if user else unmatchable_hash(hasher), password)
    except (VerificationError, InvalidHashError):
        return False
    return user is not None


def rehashed_password(user: UserModel, password: str) -> str | None:
    """A new hash of the user's (right) password, if theirs was made with older parameters."""
    hasher = password_hasher()
    if not hasher.check_needs_rehash(user.password_hash):
        return None
    return hashing(hasher.hash, password)


def issue_tokens(user: UserModel, *, fresh: bool, family: str | None = None) -> dict[str, str]:
    """An access and a refresh token of the user; a login starts a new `family`, each
    refresh continues its own (and a replayed refresh token revokes it whole)."""
    claims = {"ver": user.token_version, "fam": family or str(uuid.uuid4())}
    identity = str(user.id)
    return {
        "access_token": create_access_token(identity, fresh=fresh, additional_claims=claims),
        "refresh_token": create_refresh_token(identity, additional_claims=claims),
    }


def revoke(token: dict[str, Any]) -> None:
    """Revoke a decoded token, in the current transaction."""
    expires_at = datetime.fromtimestamp(token["exp"], UTC)
    db.session.add(RevokedTokenModel(jti=token["jti"], expires_at=expires_at))


def revoke_family(token: dict[str, Any]) -> None:
    """Revoke every token of the token's family, and commit: a used refresh token came back."""
    expires_at = datetime.now(UTC) + current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]
    insert_missing(RevokedTokenFamilyModel, [{"family": token["fam"], "expires_at": expires_at}])
    db.session.commit()


def unauthorized(message: str) -> ErrorResponse:
    return error_response(401, message, BEARER_CHALLENGE)


@jwt.token_in_blocklist_loader
def is_revoked(_header: dict, token: dict) -> bool:
    # One round trip checks the token and loads its user, for token_user below
    # (Flask-JWT-Extended asks this first).
    listed = select(RevokedTokenModel.jti).where(RevokedTokenModel.jti == token["jti"]).exists()
    family_listed = (
        select(RevokedTokenFamilyModel.family)
        .where(RevokedTokenFamilyModel.family == token.get("fam"))
        .exists()
    )
    found = db.session.execute(
        select(UserModel, listed | family_listed).where(UserModel.id == int(token["sub"]))
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
def token_revoked(_header: dict, token: dict):
    if token["type"] == "refresh" and "fam" in token:
        # Used already (or logged out), and back: whoever holds its family cannot be trusted.
        revoke_family(token)
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
