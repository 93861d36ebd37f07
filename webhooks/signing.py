"""Deliveries signed as the Standard Webhooks specification says
(https://www.standardwebhooks.com): a receiver checks them with any of its libraries, and
the secret, shown once when the endpoint is made, is all it needs."""

import base64
import os
from datetime import UTC, datetime

from standardwebhooks import Webhook

# The specification's form: whsec_ and 24 to 64 random bytes in base64.
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode("ascii")


def signed_headers(secret: str, message_id: str, body: bytes, at: datetime) -> dict[str, str]:
    """The headers that carry a delivery's id, time and signature. A retry of a delivery
    keeps its id, so that the receiver can tell it from a new one, and gets a new time."""
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.astimezone(UTC).timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
    }
