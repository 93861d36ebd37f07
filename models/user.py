from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from db import db

ROLES = ("user", "admin")


class UserModel(db.Model):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(f"role IN {ROLES}", name="role"),
        # SQLite would otherwise hand a deleted user's id to the next user, and with
        # it the deleted user's unexpired tokens.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(5), default="user", server_default="user")
    # Every token carries the version it was issued under; raising it revokes them all
    # at once (logout everywhere) without knowing their ids.
    token_version: Mapped[int] = mapped_column(default=0, server_default="0")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"
