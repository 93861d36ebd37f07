"""Schemathesis hooks (schemathesis.toml): requests as a real client makes them."""

import uuid

import schemathesis


@schemathesis.hook
def before_call(_context, case, **_kwargs) -> None:
    # A client makes a new Idempotency-Key for each new request; the fuzzer's valid keys
    # repeat ("0", "a"), and one key with two requests is the client's mistake (422).
    # Invalid keys (schemas.IdempotencyKeySchema) stay: they must be refused (400).
    key = (case.headers or {}).get("Idempotency-Key")
    if key is not None and key.isascii() and key.isprintable() and 1 <= len(key) <= 255:
        case.headers["Idempotency-Key"] = str(uuid.uuid4())
