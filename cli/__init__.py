"""The `flask` commands of the project: demo data, admins, maintenance, and catalogue files."""

from flask import Flask

from cli.admin import create_admin
from cli.backups import apply_erasures_command, backup_window, restore_store
from cli.catalogue import export_items, import_items
from cli.maintenance import prune_expired, purge_deleted
from cli.seed import seed_command


def register_commands(app: Flask) -> None:
    for command in (
        seed_command,
        create_admin,
        prune_expired,
        purge_deleted,
        import_items,
        export_items,
        restore_store,
        apply_erasures_command,
        backup_window,
    ):
        app.cli.add_command(command)
