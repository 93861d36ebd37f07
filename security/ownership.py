"""Who may change a store and what is in it: its owner, or an admin."""

from typing import Protocol

from flask_jwt_extended import current_user
from flask_smorest import abort

NOT_THE_OWNER = "Only the store's owner or an admin may change the store and what is in it"


class Owned(Protocol):
    """A store, or what is in one: whose store it is tells who may change it."""

    owner_id: int | None


def may_change(target: Owned) -> bool:
    return current_user.is_admin or target.owner_id == current_user.id


def require_owner(target: Owned) -> None:
    """403 unless the caller owns `target`'s store or is an admin."""
    if not may_change(target):
        abort(403, message=f"{NOT_THE_OWNER}.")


def require_admin() -> None:
    if not current_user.is_admin:
        abort(403, message="Only an admin may do this.")
