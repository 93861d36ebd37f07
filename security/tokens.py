"""Who is calling: JWTs, their revocation, and the answers to tokens that do not pass."""

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, current_app, g
from flask_jwt_extended import JWTManager, create_access_token, create_refresh_token
from sqlalchemy import select

from config.settings import Settings
from db import db, insert_missing, read_current
from models import RevokedTokenFamilyModel, RevokedTokenModel, UserModel
from web.errors import ErrorResponse, error_response

MIN_SECRET_BYTES = 32
MAKE_A_SECRET = "python3 -c 'import secrets; print(secrets.token_hex(32))'"
BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}
REVOKED = "The token has been revoked: log in again with POST /login."

jwt = JWTManager()


def init_tokens(app: Flask, settings: Settings) -> None:
    # Flask-JWT-Extended's settings, from ours; an app's own config (tests') goes first.
    app.config.setdefault(
        "JWT_ACCESS_TOKEN_EXPIRES", timedelta(minutes=settings.jwt_access_token_minutes)
    )
    app.config.setdefault(
        "JWT_REFRESH_TOKEN_EXPIRES", timedelta(days=settings.jwt_refresh_token_days)
    )
    app.config.setdefault("JWT_SECRET_KEY", settings.jwt_secret_key)
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


def issue_tokens(user: UserModel, *, fresh: bool, family: str | None = None) -> dict[str, str]:
    """An access and a refresh token of the user; a login starts a new `family`, each
    refresh continues its own (and a replayed refresh token revokes it whole)."""
    claims = {"ver": user.token_version, "fam": family or str(uuid.uuid4())}
    identity = str(user.id)
    return {
        "access_token": create_access_token(identity, fresh=fresh, additional_claims=claims),
        "refresh_token": create_refresh_token(identity, additional_claims=claims),
    }


def revoke(token: dict[str, Any]) -> bool:
    """Revoke a decoded token, in the current transaction; False if it was revoked already
    (two requests racing with one token: the second one to revoke it loses)."""
    expires_at = datetime.fromtimestamp(token["exp"], UTC)
    return insert_missing(RevokedTokenModel, [{"jti": token["jti"], "expires_at": expires_at}]) == 1


def revoke_family(token: dict[str, Any]) -> None:
    """Revoke every token of the token's family, and commit: a used refresh token came back,
    and the request is refused (401), which commits nothing else."""
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
    found = read_current(
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
