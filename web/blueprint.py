"""The Blueprint every resource is on, and its three decorators, one per kind of view:
`read` (GET one resource), `listing` (GET a page of a list) and `write` (anything that
changes something). A view declares what it needs once; the decorator applies the pieces
in the one right order and documents each of them:

    login (401 first) > conditional (428; ETag, 304) > transaction (commit once)
      > Idempotency-Key > arguments (body, query, cookies, headers) > response
      > owner (403, 412) > the view
"""

import inspect
from collections.abc import Callable, Mapping
from functools import wraps
from types import MappingProxyType
from typing import Any, Literal

import flask_smorest
from flask import Response
from flask_jwt_extended import jwt_required
from marshmallow import Schema

from schemas import IdempotencyKeySchema, PageArgsSchema
from schemas.field_types import MAX_PAGE_DEPTH
from security.ownership import NOT_THE_OWNER, Owned, require_admin, require_owner
from web import conditional, idempotency, transactions
from web.bodies import StreamedBody
from web.events import Emits, emitting
from web.openapi import BEARER_AUTH, ETAG_HEADER, RETRY_AFTER, Said
from web.pagination import LINK_HEADER, linked
from web.parsing import ArgumentsParser

Token = Literal["access", "refresh", "any"]
TOKEN_NAMES = {"access": "an access token", "refresh": "a refresh token", "any": "a token"}
# An error a view can answer: its description, or its description and headers.
Errors = Mapping[int, str | tuple[str, dict]]
NO_ERRORS: Errors = MappingProxyType({})
NO_CONFLICTS: transactions.Conflicts = MappingProxyType({})


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = ArgumentsParser()

    def read(
        self,
        schema: type[Schema] | None,
        *,
        token: Token | None = None,
        tagged: bool = True,
        errors: Errors = NO_ERRORS,
        content: dict | None = None,
        query: type[Schema] | None = None,
        request_headers: type[Schema] | None = None,
    ) -> Callable:
        """A GET of one resource, answered as `schema` (`tagged`: with its ETag); with no
        schema, as the Response the view makes, which `content` documents. The view gets the
        parsed query and `request_headers` as `query` and `headers`."""
        return self.compose(
            200, schema, token=token, tagged=tagged, errors=errors, content=content, query=query,
            request_headers=request_headers,
        )  # fmt: skip

    def listing(
        self,
        schema: type[Schema],
        *,
        arguments: type[Schema] = PageArgsSchema,
        token: Token | None = None,
        errors: Errors = NO_ERRORS,
        headers: dict | None = None,
    ) -> Callable:
        """A GET of a page of `schema`s: the view takes page_size with after or page (and
        `arguments`' other query parameters) as keyword arguments and returns a Page; the
        answer carries the Link to the next page (and the `headers` documented)."""
        return self.compose(
            200, schema, token=token, errors=errors, page_arguments=arguments, headers=headers
        )

    def write(
        self,
        status: int,
        schema: type[Schema],
        *,
        emits: Emits | None,
        token: Token | None = "access",
        fresh: bool = False,
        admin: bool = False,
        body: type[Schema] | None = None,
        streamed: StreamedBody | None = None,
        query: type[Schema] | None = None,
        cookies: type[Schema] | None = None,
        owner: Callable[..., Owned] | None = None,
        current: Callable[[Any], Response] | None = None,
        idempotent: Callable[[], str] | None = None,
        tagged: bool = True,
        errors: Errors = NO_ERRORS,
        conflicts: transactions.Conflicts = NO_CONFLICTS,
        headers: dict | None = None,
        links: dict[str, dict] | None = None,
        callbacks: dict[str, dict] | None = None,
    ) -> Callable:
        """A request that changes something, committed once it answered `status`; a
        constraint its writes break refuses it with the one of its `conflicts` named for it.

        `owner` finds what the view changes, from the view's arguments it names (404 if it is
        not there: that it exists is public, as reads are); anyone but the store's owner or
        an admin is refused (403), and the view gets it as `target`. With `current`, which
        renders it as its GET does, an If-Match naming another ETag is refused (412): `owner`
        locks it, so that the comparison holds until the write commits. The view gets the
        parsed body, query and cookies by name too, as `body`, `query` and `cookies`; a
        `streamed` body is spooled instead, for the view to read (web.bodies.spooled_body).
        `idempotent` is the scope of the request's Idempotency-Key; `tagged` answers carry
        ETags and take If-Match. `callbacks` documents the requests the API sends (webhooks).
        `emits` is the event a success records in the same transaction (web/events.py),
        which every write names: None only for writes that change no store or what is in it.
        """
        return self.compose(
            status, schema, emits=emits, token=token, fresh=fresh, admin=admin, tagged=tagged,
            body=body, streamed=streamed, query=query, cookies=cookies, owner=owner,
            current=current, idempotent=idempotent, errors=errors, conflicts=conflicts,
            headers=headers, links=links, callbacks=callbacks, changes=True,
        )  # fmt: skip

    def compose(
        self,
        status: int,
        schema: type[Schema] | None,
        *,
        token: Token | None,
        errors: Errors,
        conflicts: transactions.Conflicts = NO_CONFLICTS,
        fresh: bool = False,
        admin: bool = False,
        tagged: bool = True,
        changes: bool = False,
        idempotent: Callable[[], str] | None = None,
        body: type[Schema] | None = None,
        streamed: StreamedBody | None = None,
        query: type[Schema] | None = None,
        cookies: type[Schema] | None = None,
        request_headers: type[Schema] | None = None,
        page_arguments: type[Schema] | None = None,
        owner: Callable[..., Owned] | None = None,
        current: Callable[[Any], Response] | None = None,
        headers: dict | None = None,
        links: dict[str, dict] | None = None,
        callbacks: dict[str, dict] | None = None,
        content: dict | None = None,
        emits: Emits | None = None,
    ) -> Callable:
        def decorator(view: Callable) -> Callable:
            method = view.__name__.upper()
            said = Said()
            success_headers = dict(headers or {})
            if token:
                needed = "a fresh access token (from POST /login)" if fresh else TOKEN_NAMES[token]
                said(401, f"Needs {needed}: missing, invalid, expired or revoked")
                if admin:
                    said(403, "Only for admins")
            if tagged:
                if method in conditional.TAGGED:
                    success_headers.update(ETAG_HEADER)
                if method in conditional.CHECKING_NOT_MODIFIED:
                    said(304, "Not modified: your copy is current")
                if method in conditional.NEEDING_IF_MATCH:
                    said(412, "Changed since the read whose ETag If-Match names: read it again",
                         ETAG_HEADER)  # fmt: skip
                    said(428, "If-Match is missing, and REQUIRE_IF_MATCH is set")
            if idempotent:
                success_headers.update(idempotency.REPLAYED_HEADER)
                key = idempotency.HEADER
                said(409, f"A request with this {key} is still running: retry after "
                     "Retry-After seconds", RETRY_AFTER)  # fmt: skip
                said(422, f"The {key} was sent with another request")
                said(400, f"The {key} is not 1-255 printable characters")
            if body:
                said(400, "The body is not valid JSON")
                said(415, "The body is not JSON")
            if streamed:
                said(413, f"The body is larger than {streamed.limit_name}")
                said(415, f"The body is not {' or '.join(streamed.examples)}")
            if page_arguments:
                success_headers.update(LINK_HEADER)
                said(400, f"page x page_size past {MAX_PAGE_DEPTH:,}: use after")
            for code, error in errors.items():
                said(code, *((error,) if isinstance(error, str) else error))
            if owner:
                said(403, NOT_THE_OWNER)
            undocumented = {conflict.status for conflict in conflicts.values()} - set(said)
            if undocumented:
                raise TypeError(f"{view.__qualname__}: errors do not say what {undocumented} mean")
            composed = view
            if changes:
                composed = transactions.decided(composed, conflicts)
            if owner:
                composed = owned(composed, owner, current, emits)
            if page_arguments:
                composed = linked(composed, page_arguments().fields)
            many = page_arguments is not None
            if schema is not None:
                composed = self.response(
                    status, schema(many=many), headers=success_headers or None
                )(composed)
            if emits:
                composed = emitting(composed, emits)
            # Every other answer documented by one doc(): each documenting decorator of
            # Flask-Smorest's wraps the view, a call more on every request.
            documented = {"responses": {**said.documented(), **(content or {})}}
            # OpenAPI links from the 201 to what a client does next, for clients and fuzzers.
            documented["responses"] |= {201: {"links": links}} if links else {}
            documented |= {"callbacks": callbacks} if callbacks else {}
            if token:
                documented["security"] = [{BEARER_AUTH: []}]
            if streamed:
                documented["requestBody"] = streamed.openapi()
            composed = self.doc(**documented)(composed)
            for location, arguments in (("cookies", cookies), ("headers", request_headers)):
                if arguments:
                    composed = self.arguments(arguments, location=location, arg_name=location)(
                        composed
                    )
            if query or page_arguments:
                # A page's arguments come one by one (page_size, after, ...).
                named = {"as_kwargs": True} if many else {"arg_name": "query"}
                arguments = query or page_arguments
                composed = self.arguments(arguments, location="query", **named)(composed)
            if body:
                required = not getattr(body, "BODY_OPTIONAL", False)
                composed = self.arguments(body, required=required, arg_name="body")(composed)
            if idempotent:
                composed = self.arguments(
                    IdempotencyKeySchema, location="headers", as_kwargs=True, error_status_code=400
                )(idempotency.keyed(composed, idempotent))
            if streamed:
                # Outside the Idempotency-Key, whose fingerprint is the body's digest.
                composed = streamed.spooled(composed)
            if changes:
                composed = transactions.committed(composed, by_user=token is not None)
            if tagged:
                composed = conditional.conditional(composed)
            if token:
                composed = logged_in(composed, token, fresh=fresh, admin=admin)
            return composed

        return decorator


def logged_in(view: Callable, token: Token, *, fresh: bool, admin: bool) -> Callable:
    """`view`, for callers with a valid token of this type (fresh, of an admin)."""

    @wraps(view)
    def allowed(*args, **kwargs):
        if admin:
            require_admin()
        return view(*args, **kwargs)

    required = jwt_required(fresh=fresh, refresh=token == "refresh", verify_type=token != "any")
    return required(allowed)


def owned(
    view: Callable,
    load: Callable[..., Owned],
    current: Callable[[Any], Response] | None,
    emits: Emits | None,
) -> Callable:
    """`view`, given what `load` finds as `target`, once the caller may change it and, with
    `current`, once If-Match names it as it is. `load` gets the view's arguments it names
    (`store_id` of the URL, the `body`). The target (and for a deletion what it was) is left
    for the event `emits`."""
    names = inspect.signature(load).parameters

    @wraps(view)
    def guarded(view_self, **arguments):
        target = load(**{name: arguments[name] for name in names})
        require_owner(target)
        if current is not None and conditional.wants_comparison():
            conditional.refuse_unless_current(current(target))
        if emits is not None:
            emits.keep(target)
        return view(view_self, target=target, **arguments)

    return guarded
