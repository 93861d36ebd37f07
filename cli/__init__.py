"""The `flask` commands of the project: demo data, admins, and maintenance."""

from flask import Flask

from cli.admin import create_admin
from cli.maintenance import prune_expired, purge_deleted
from cli.seed import seed_command


def register_commands(app: Flask) -> None:
    for command in (seed_command, create_admin, prune_expired, purge_deleted):
        app.cli.add_command(command)
