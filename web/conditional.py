"""Conditional requests (RFC 9110, section 13): a strong ETag on every answer that shows a
resource, 304 for an If-None-Match that names it, and the If-Match check a change makes
under the lock of the row it changes.

Our own rather than Flask-Smorest's @etag: an ETag here is the hash of the answer's bytes
(GET /store/<id> is rendered by PostgreSQL, not dumped by a schema), If-Match is optional
unless REQUIRE_IF_MATCH is set, and the check belongs with the row lock (web.blueprint),
none of which its public hooks allow.
"""

from collections.abc import Callable
from functools import wraps

from flask import Response, request
from flask_smorest import abort
from werkzeug.http import generate_etag, quote_etag

from config.settings import current_settings

CHECKING_NOT_MODIFIED = frozenset({"GET", "HEAD"})
TAGGED = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH"})
NEEDING_IF_MATCH = frozenset({"PUT", "PATCH", "DELETE"})


def conditional(view: Callable[..., Response]) -> Callable[..., Response]:
    """Refuse a change without If-Match when REQUIRE_IF_MATCH says so (428), and tag the
    answer with its ETag (304 for a GET whose If-None-Match names it)."""

    @wraps(view)
    def tagged(*args, **kwargs) -> Response:
        method = request.method
        needs_if_match = method in NEEDING_IF_MATCH and not request.if_match
        if needs_if_match and current_settings().require_if_match:
            abort(
                428,
                message="Send If-Match with the ETag of the resource as you last read it "
                "(GET it for one): this server changes nothing blind.",
            )
        response = view(*args, **kwargs)
        if method in TAGGED:
            tag(response, check_not_modified=method in CHECKING_NOT_MODIFIED)
        return response

    return tagged


def tag(response: Response, check_not_modified: bool) -> None:
    etag = generate_etag(response.get_data())
    response.set_etag(etag)
    # If-None-Match as RFC 9110 has it (weak comparison, or *), rather than Werkzeug's
    # make_conditional: that also writes a Date header, which gunicorn writes too (twice,
    # then), and costs more than the rest of this on every GET. The header is looked for in
    # the environ first: most GETs carry none (parsing costs as much as hashing the answer).
    if (
        check_not_modified
        and "HTTP_IF_NONE_MATCH" in request.environ
        and request.if_none_match.contains_weak(etag)
    ):
        response.status_code = 304


def wants_comparison() -> bool:
    """Whether the request's If-Match names ETags to compare (If-Match: * is any current
    representation: nothing to render)."""
    return bool(request.if_match) and not request.if_match.star_tag


def refuse_unless_current(current: Response) -> None:
    """412 unless If-Match names `current`'s ETag, compared strongly."""
    etag = generate_etag(current.get_data())
    if not request.if_match.contains(etag):
        abort(
            412,
            message="It changed since the read whose ETag If-Match names: GET it again "
            "(its ETag is in this answer's) and redo your change on what it is now.",
            headers={"ETag": quote_etag(etag)},
        )
