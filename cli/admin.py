"""`flask create-admin USERNAME`."""

import click
from flask.cli import with_appcontext
from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from db import db
from models import UserModel
from schemas.users import UserCreateSchema
from security.passwords import new_user


@click.command("create-admin")
@click.argument("username")
@click.option("--email", help="The email of a new user (asked when missing).")
@with_appcontext
def create_admin(username: str, email: str | None) -> None:
    """Make USERNAME (in any case) an admin; a new user is created, asking for a password."""
    user = db.session.scalar(select(UserModel).where(UserModel.named(username)))
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
