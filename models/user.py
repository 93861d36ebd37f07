import string

from sqlalchemy import CheckConstraint, ColumnElement, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from db import db

ROLES = ("user", "admin")
# Usernames are ASCII: only its letters have a case. (str.lower() would make the Kelvin
# sign "K" a "k": a name no one could register would log in to "kate" under another key.)
ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def username_key(username: str) -> str:
    """What a username stands for: "Alice", "ALICE" and "alice" are one user."""
    return username.translate(ASCII_LOWER)


class UserModel(db.Model):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(f"role IN {ROLES}", name="role"),
        # SQLite would otherwise hand a deleted user's id to the next user, and with
        # it the deleted user's unexpired tokens.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Kept as registered; unique whatever the case (the index below).
    username: Mapped[str] = mapped_column(String(80))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(5), default="user", server_default="user")
    # Every token carries the version it was issued under; raising it revokes them all
    # at once (logout everywhere, a new password) without knowing their ids.
    token_version: Mapped[int] = mapped_column(default=0, server_default="0")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @classmethod
    def named(cls, username: str) -> ColumnElement[bool]:
        """The condition that finds the user of `username`, in whatever case it is written
        (by the index below)."""
        return func.lower(cls.username) == username_key(username)


# An expression index: SQLite's batch mode (Alembic's table copy) does not see it, so a
# migration that copies `users` on SQLite must create it again.
Index("ix_users_lower_username", func.lower(UserModel.username), unique=True)
