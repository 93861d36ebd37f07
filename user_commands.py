"""`flask create-admin`, `flask prune-expired` and `flask purge-deleted`."""

from datetime import UTC, datetime

import click
from flask import Flask
from flask.cli import with_appcontext
from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from auth import new_user
from db import db, prune
from idempotency import prune_expired as prune_expired_keys
from models import RevokedTokenFamilyModel, RevokedTokenModel, UserModel
from purge import purge_deleted
from schemas import UserCreateSchema
from throttle import prune_expired as prune_expired_throttles


@click.command("create-admin")
@click.argument("username")
@click.option("--email", help="The email of a new user (asked when missing).")
@with_appcontext
def create_admin(username: str, email: str | None) -> None:
    """Make USERNAME an admin; a new user is created, asking for a password."""
    user = db.session.scalar(select(UserModel).where(UserModel.username == username))
    if user is None:
        user = prompted_user(username, email or click.prompt("Email"))
        db.session.add(user)
    user.role = "admin"
    try:
        db.session.commit()
    except IntegrityError as error:
        raise click.ClickException("A user with this email exists already.") from error
    click.echo(f"{username} is an admin (user {user.id}).")


def prompted_user(username: str, email: str) -> UserModel:
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        fields = UserCreateSchema().load(
            {"username": username, "email": email, "password": password}
        )
    except ValidationError as error:
        problems = "; ".join(f"{name}: {' '.join(m)}" for name, m in error.messages.items())
        raise click.ClickException(problems) from error
    return new_user(fields)


@click.command("prune-expired")
@with_appcontext
def prune_expired() -> None:
    """Forget revoked tokens and token families that have expired anyway, throttle counts
    whose window is over and expired idempotency keys. Keyed writes and counted attempts
    prune as they go; this is for a backlog, from cron if you like."""
    now = datetime.now(UTC)
    tokens = prune(RevokedTokenModel, RevokedTokenModel.expires_at < now)
    families = prune(RevokedTokenFamilyModel, RevokedTokenFamilyModel.expires_at < now)
    throttles = prune_expired_throttles()
    keys = prune_expired_keys()
    db.session.commit()
    click.echo(
        f"Pruned {tokens} revoked token(s), {families} revoked token family(ies), "
        f"{throttles} throttle count(s) and {keys} idempotency key(s), all expired."
    )


def register_user_commands(app: Flask) -> None:
    app.cli.add_command(create_admin)
    app.cli.add_command(prune_expired)
    app.cli.add_command(purge_deleted)
