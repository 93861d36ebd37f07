"""Request bodies too big to hold in memory (catalogue imports): read as they arrive into a
temporary file, which spills to disk past a megabyte, and hashed on the way for
Idempotency-Key, up to a limit of their own instead of MAX_CONTENT_LENGTH."""

import hashlib
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import BinaryIO, NoReturn

from flask import g, request
from flask_smorest import abort
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import ClientDisconnected

from config.settings import current_settings
from db import db

IN_MEMORY_BYTES = 1024 * 1024
READ_BYTES = 64 * 1024


@dataclass(frozen=True)
class SpooledBody:
    file: BinaryIO
    size: int
    digest: bytes


def spool_body(media_types: tuple[str, ...], max_bytes: int) -> SpooledBody:
    """The request's body, read once (415 unless it is one of `media_types`; 413 past
    `max_bytes`, also when sent without a Content-Length; 400 if it ends before its
    Content-Length says, or without its last chunk: no file, nothing kept). No database
    transaction is open while it arrives, at whatever pace the client sends it."""
    if request.mimetype not in media_types:
        abort(415, message=f"Send the body as one of: {', '.join(media_types)}.")
    # Only reads came before (the token's checks). Committed as
    # web.transactions.end_transaction_early does, which would import this module back.
    db.session.commit()
    # Werkzeug refuses (413) a Content-Length past the limit, and a chunked body once it
    # passes it.
    request.max_content_length = max_bytes
    # Closed with the request (g): the view reads it after this returns.
    spooled = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_BYTES)  # noqa: SIM115
    digest = hashlib.sha256()
    size = 0
    lift_the_bound = client_stalls_cut_off()
    try:
        while chunk := read_some():
            size += len(chunk)
            if size > max_bytes:
                abort(413, message=f"The body is larger than {max_bytes:,} bytes.")
            digest.update(chunk)
            spooled.write(chunk)
    finally:
        lift_the_bound()
    if request.content_length is not None and size < request.content_length:
        # gunicorn ends a body whose client went away as if it were whole.
        cut_off()
    spooled.seek(0)
    g.spooled_body = body = SpooledBody(spooled, size, digest.digest())
    return body


def read_some() -> bytes:
    try:
        return request.stream.read(READ_BYTES)
    # Werkzeug's word for a body that ended before its Content-Length; gunicorn's reader's
    # for a broken one (NoMoreData is an OSError, a chunk without its end a ParseException),
    # and the socket's own (a reset; CLIENT_STALL_SECONDS without a byte): the same
    # cut-off body.
    except (ClientDisconnected, OSError, ParseException):
        cut_off()


def cut_off() -> NoReturn:
    abort(
        400,
        message="The body ended before its Content-Length, or without its last chunk: "
        "nothing was kept. Send the whole file again (with the same Idempotency-Key).",
    )


def client_stalls_cut_off() -> Callable[[], None]:
    """Bound the time a client may leave the worker waiting on its network, to send the next
    piece of an upload or take the next of an answer (CLIENT_STALL_SECONDS): one that stalls
    frees the worker then, rather than at gunicorn's timeout. The function that lifts the
    bound again, for a next request on the connection."""
    client: socket.socket | None = request.environ.get("gunicorn.socket")
    if client is None:  # Another server than gunicorn's (the tests' client, flask run)
        return lambda: None
    before = client.gettimeout()
    client.settimeout(current_settings().client_stall_seconds)
    return lambda: client.settimeout(before)


def spooled_body() -> SpooledBody:
    return g.spooled_body


def body_to_fingerprint() -> bytes:
    """What stands for the body in an Idempotency-Key's fingerprint: the body, or the
    digest of a spooled one, which is never held whole."""
    spooled = g.get("spooled_body")
    return request.get_data(cache=True) if spooled is None else spooled.digest


@dataclass(frozen=True)
class StreamedBody:
    """What a view reads as a stream: its media types, each with an example for the spec
    (Swagger UI offers it to edit and send), and its size limit."""

    examples: dict[str, str]
    max_bytes: Callable[[], int]
    limit_name: str

    def openapi(self) -> dict:
        return {
            "required": True,
            "content": {
                media_type: {"schema": {"type": "string", "minLength": 1}, "example": example}
                for media_type, example in self.examples.items()
            },
        }

    def spooled(self, view: Callable) -> Callable:
        """`view`, once the body is spooled (spooled_body())."""

        @wraps(view)
        def spooling(*args, **kwargs):
            spool_body(tuple(self.examples), self.max_bytes())
            return view(*args, **kwargs)

        return spooling
