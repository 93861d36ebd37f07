"""Who is calling: JWTs and their revocation (what a token that does not pass is answered:
web/errors.py)."""

import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, current_app, g
from flask_jwt_extended import JWTManager, create_access_token, create_refresh_token
from sqlalchemy import ColumnElement, select

from config.settings import Settings
from db import db, read_current, upsertable_insert
from models import TokenFamilyModel, UserModel

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


def issue_tokens(
    user: UserModel, *, fresh: bool, refreshed: dict[str, Any] | None = None
) -> dict[str, str]:
    """An access and a refresh token of the user. A login starts a new family, whose refresh
    tokens are numbered from 1; a refresh continues the family of the `refreshed` token,
    one number on (a replayed refresh token revokes the family whole)."""
    family = refreshed["fam"] if refreshed else str(uuid.uuid4())
    generation = refreshed["gen"] + 1 if refreshed else 1
    claims = {"ver": user.token_version, "fam": family}
    identity = str(user.id)
    return {
        "access_token": create_access_token(identity, fresh=fresh, additional_claims=claims),
        "refresh_token": create_refresh_token(
            identity, additional_claims={**claims, "gen": generation}
        ),
    }


def use_refresh_token(token: dict[str, Any]) -> bool:
    """Mark a decoded refresh token used, it and its family's older ones, in the current
    transaction; False if it was used already or its family revoked (two requests racing
    with one token: the second one loses). The family keeps its one row."""
    generation = token["gen"]
    return change_family(
        token,
        unless=TokenFamilyModel.revoked | (TokenFamilyModel.used_generation >= generation),
        used_generation=generation,
    )


def revoke_family(token: dict[str, Any]) -> bool:
    """Revoke every token of the token's family (a logout, or a used refresh token back), in
    the current transaction; False if it was revoked already."""
    return change_family(token, unless=TokenFamilyModel.revoked, revoked=True)


def change_family(token: dict[str, Any], *, unless: ColumnElement[bool], **changes) -> bool:
    """Write `changes` to the row of the token's family (inserted if missing), unless its
    row says `unless`, in one statement: of concurrent requests, those after the first see
    its change, under the row's lock. Whether it was written."""
    # Until then every token of the family, however refreshed, has expired.
    lifetimes = ("JWT_ACCESS_TOKEN_EXPIRES", "JWT_REFRESH_TOKEN_EXPIRES")
    expires_at = datetime.now(UTC) + max(current_app.config[name] for name in lifetimes)
    insert = upsertable_insert(TokenFamilyModel).values(
        family=token["fam"], expires_at=expires_at, **changes
    )
    upsert = insert.on_conflict_do_update(
        index_elements=[TokenFamilyModel.family],
        set_={**changes, "expires_at": expires_at},
        where=~unless,
    )
    return db.session.execute(upsert.returning(TokenFamilyModel.family)).first() is not None


def refuse_replay(token: dict[str, Any]) -> None:
    """A used refresh token came back: revoke its family, and commit, as the request is
    refused (401), which commits nothing else."""
    revoke_family(token)
    db.session.commit()


@jwt.token_in_blocklist_loader
def is_revoked(_header: dict, token: dict) -> bool:
    # One round trip checks the token and loads its user, for token_user below
    # (Flask-JWT-Extended asks this first).
    refused = TokenFamilyModel.revoked
    if token["type"] == "refresh":
        # A token from before migration 0015 has no number; it fails the version check.
        refused |= TokenFamilyModel.used_generation >= token.get("gen", 0)
    listed = select(TokenFamilyModel.family).where(
        TokenFamilyModel.family == token.get("fam"), refused
    )
    found = read_current(
        select(UserModel, listed.exists()).where(UserModel.id == int(token["sub"]))
    ).first()
    if found is None:
        g.token_user = None
        return False
    user, revoked = found
    # A user who logged out everywhere raised token_version past the token's.
    g.token_user = user if user.token_version == token.get("ver") else None
    return revoked


def still_good(token: dict) -> bool:
    """Whether a token accepted earlier would be accepted now: not expired, its family not
    revoked, its user there and not logged out everywhere since. For what outlives the
    request that checked it (an event stream)."""
    if time.time() >= token["exp"]:
        return False
    revoked = is_revoked({}, token)
    return not revoked and g.pop("token_user", None) is not None


@jwt.user_lookup_loader
def token_user(_header: dict, _token: dict) -> UserModel | None:
    return g.pop("token_user", None)
