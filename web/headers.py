"""Headers every answer carries, whatever view or error handler wrote it."""

from flask import Flask, Response, request

from db import READ_METHODS

# Never sniffed into another type than the one declared (a JSON body taken for HTML), and
# never framed by another origin's page (Swagger UI's buttons clicked through a decoy).
EVERY_ANSWER = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",
    "Content-Security-Policy": "frame-ancestors 'self'",
}
# Compared in lower case, as HTTP names are.
EVERY_ANSWER_BY_KEY = [(name.lower(), name, value) for name, value in EVERY_ANSWER.items()]


def init_headers(app: Flask) -> None:
    app.after_request(with_security_headers)


def with_security_headers(response: Response) -> Response:
    headers, method = response.headers, request.method
    # Those the view or handler did not write, found in one pass over the headers rather
    # than one per name (setdefault's): on GET /store/<id>, a third of this hook's cost.
    written = {name.lower() for name, _value in headers}
    headers.extend(
        [(name, value) for key, name, value in EVERY_ANSWER_BY_KEY if key not in written]
    )
    # The answer to a write is the writer's alone: tokens (/login, /refresh, RFC 6749
    # section 5.1 says no-store), a new resource, an error. Keyed on the method rather than on
    # a list of token views, so that a new view that hands out tokens is covered too.
    if method not in READ_METHODS and "cache-control" not in written:
        headers["Cache-Control"] = "no-store"
    if method == "OPTIONS" and not response.content_length:
        # Flask's own answer to OPTIONS: Allow alone, as no content, not an empty HTML page.
        response.status_code = 204
        del response.headers["Content-Type"]
    return response
