"""Passwords: Argon2 hashes, made and checked at a lower CPU priority than requests."""

import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, current_app

from models import UserModel
from priority import lower_own_priority

T = TypeVar("T")


def init_passwords(app: Flask) -> None:
    # Argon2's defaults unless the app was given a hasher (tests take a cheap one).
    app.config.setdefault("PASSWORD_HASHER", PasswordHasher())


def password_hasher() -> PasswordHasher:
    return current_app.config["PASSWORD_HASHER"]


@cache  # one per process, made at first use: in each gunicorn worker, after the fork
def hashing_thread() -> ThreadPoolExecutor:
    """A thread of lower CPU priority for Argon2: a login's hash keeps the machine's cores
    busy for a tenth of a second (argon2-cffi hashes on 4 threads, which inherit this
    one's priority), and the requests other workers serve meanwhile go first (figures in
    docs/benchmarks.md). Alone on the machine, it runs as fast as ever."""
    return ThreadPoolExecutor(1, thread_name_prefix="argon2", initializer=lower_own_priority)


def hashing(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)`, a hash or a check of a password, at hashing priority."""
    return hashing_thread().submit(function, *args).result()


def hashed_password(password: str) -> str:
    """The hash a password is kept as. Seconds of CPU: call it holding no transaction."""
    return hashing(password_hasher().hash, password)


def new_user(account: dict[str, str]) -> UserModel:
    """A user from the fields POST /register takes; the password is kept as its hash only."""
    fields = dict(account)
    password = fields.pop("password")
    return UserModel(**fields, password_hash=hashed_password(password))


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
