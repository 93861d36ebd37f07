"""Device cookies (OWASP): proof that a client logged in to an account before, which gives it a
login allowance of its own."""

import secrets

from flask import Response, current_app, request
from itsdangerous import BadData, URLSafeTimedSerializer

DEVICE_COOKIE = "device"
DEVICE_COOKIE_SECONDS = 365 * 86400  # a year


def device_cookies() -> URLSafeTimedSerializer:
    # Signed, not a JWT: it proves only that this client logged in to one account once.
    return URLSafeTimedSerializer(current_app.config["JWT_SECRET_KEY"], salt="login-device")


def new_device_cookie(username: str) -> str:
    """A device cookie (OWASP): this client logged in to `username`, as device <random id>."""
    return device_cookies().dumps([username, secrets.token_hex(16)])


def remember_device(response: Response, username: str) -> Response:
    """Give the client of a right login to `username` a device cookie, for its next login."""
    response.set_cookie(
        DEVICE_COOKIE,
        new_device_cookie(username),
        max_age=DEVICE_COOKIE_SECONDS,
        path="/login",
        secure=request.is_secure,
        httponly=True,
        samesite="Strict",
    )
    return response


def known_device(cookie: str | None, username: str) -> str | None:
    """The device id of a valid, unexpired device cookie given at a login to `username`."""
    if not cookie:
        return None
    try:
        owner, device = device_cookies().loads(cookie, max_age=DEVICE_COOKIE_SECONDS)
    except BadData:
        return None
    return device if owner == username else None
