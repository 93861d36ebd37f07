import json
import sqlite3
from collections.abc import Callable
from functools import wraps
from typing import Any, ClassVar, Literal, NoReturn, Protocol, TypeVar

import flask_smorest
from flask import Request, Response, current_app, request
from flask_jwt_extended import current_user, jwt_required
from flask_smorest import abort
from flask_smorest.error_handler import ErrorSchema
from marshmallow import RAISE, Schema, fields
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.http import generate_etag, quote_etag

import idempotency
from db import db
from models import StoreModel
from resources.listing import LINK_HEADER, Page, next_page_link
from schemas import MAX_PAGE_DEPTH, IdempotencyKeySchema, PageArgsSchema
from throttle import client_of

Model = TypeVar("Model")


class ArgumentsParser(FlaskParser):
    # Unknown query parameters are refused, as unknown body fields are: a misspelt
    # page_size would otherwise be a silent default.
    DEFAULT_UNKNOWN_BY_LOCATION: ClassVar[dict[str, str | None]] = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": RAISE,
        "querystring": RAISE,
    }

    def load_json(self, request: Request, schema: Schema) -> Any:
        # Webargs would read a missing body, or one of another type, as an empty one.
        if not request.get_data(cache=True):
            if getattr(schema, "BODY_OPTIONAL", False):
                return {}
            abort(422, errors={"json": ["Send a JSON object in the body."]})
        if not is_json_request(request):
            abort(415, message="Send the body as JSON, with Content-Type: application/json.")
        # A body nested deeper than Python's recursion limit is malformed JSON for
        # the client (400), not a crash of ours.
        try:
            body = super().load_json(request, schema)
        except RecursionError:
            abort(400, errors={"json": ["JSON nested too deeply."]})
        # JSON escapes can spell lone surrogates ("\ud800"): no Unicode text, and nothing
        # a database driver can encode.
        try:
            json.dumps(body, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            abort(400, errors={"json": ["The JSON holds a lone surrogate, which is not text."]})
        return body

    def handle_error(self, error, req: Request, schema: Schema, **kwargs) -> NoReturn:
        if "headers" in error.messages:
            abort(400, errors=error.messages, message="Fix the headers named in errors.")
        super().handle_error(error, req, schema, **kwargs)

    def load_querystring(self, request: Request, schema: Schema) -> Any:
        # Webargs would quietly take the first of `?page=1&page=x`: a client that sends a
        # parameter twice has a bug worth telling about.
        repeated = {
            name: ["Give this parameter once."]
            for name, field in schema.fields.items()
            if not isinstance(field, fields.List)
            and len(request.args.getlist(field.data_key or name)) > 1
        }
        if repeated:
            abort(422, errors={"query": repeated})
        return super().load_querystring(request, schema)


class Owned(Protocol):
    """A store, or what is in one: whose store it is tells who may change it."""

    owner_id: int | None


# The security scheme that the Api declares in the spec: a JWT in the Authorization header.
BEARER_AUTH = "bearerAuth"
TOKEN_NAMES = {"access": "an access token", "refresh": "a refresh token", "any": "a token"}

RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer"},
    }
}
REPLAYED_HEADER = {
    idempotency.REPLAYED: {
        "description": "true: this is the kept answer to an earlier request with the same "
        "Idempotency-Key, which ran; this one ran nothing",
        "schema": {"type": "string", "enum": ["true"]},
    }
}
LOCATION_HEADER = {
    "Location": {"description": "Where the new resource is", "schema": {"type": "string"}}
}
ETAG_HEADER = {
    "ETag": {
        "description": "The ETag of the resource as it is now (what If-Match must name)",
        "schema": {"type": "string"},
    }
}


def user_scope() -> str:
    """Whose Idempotency-Keys a request's is among: its user's."""
    return f"user:{current_user.id}"


def address_scope() -> str:
    """Whose Idempotency-Keys a request with no user is among: its client address's."""
    return f"address:{client_of(request.remote_addr)}"


def error_doc(description: str, headers: dict | None = None) -> dict:
    """A response in the spec with the one error shape."""
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {
        "description": description,
        "content": content,
        **({"headers": headers} if headers else {}),
    }


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = ArgumentsParser()

    def alt_response(self, status_code: int, response=None, **kwargs) -> Callable:
        """Document another response; an error one has the one error shape, said in the spec."""
        if response is None and int(status_code) >= 400:
            kwargs.setdefault("schema", ErrorSchema)
        document = super().alt_response(status_code, response, **kwargs)

        def decorator(view: Callable) -> Callable:
            documented = document(view)
            # One status, several causes (a 409 for a taken name or a running request):
            # the spec says each, not just the last one documented.
            said = documented._apidoc["response"]["responses"][status_code]
            descriptions = [each["description"] for each in said if isinstance(each, dict)]
            for each in said:
                if isinstance(each, dict):
                    each["description"] = "; or ".join(dict.fromkeys(reversed(descriptions)))
            return documented

        return decorator

    def arguments(self, schema, *, location: str = "json", **kwargs):
        """Parse arguments; a JSON body may also be malformed (400) or of another type (415)."""
        if location == "json":
            kwargs.setdefault("required", not getattr(schema, "BODY_OPTIONAL", False))
        parse = super().arguments(schema, location=location, **kwargs)
        if location != "json":
            return parse
        return lambda view: self.alt_response(400, description="The body is not valid JSON")(
            self.alt_response(415, description="The body is not JSON")(parse(view))
        )

    def paginated(self, schema: type[Schema], arguments: type[Schema] = PageArgsSchema) -> Callable:
        """A list view: takes page_size with after or page (and `arguments`' other query
        parameters, as keyword arguments), answers a page of `schema` and a Link header."""

        query_names = set(arguments().fields)

        def decorator(view: Callable[..., Page]) -> Callable:
            @wraps(view)
            def linked(*args, **kwargs) -> tuple[list, dict[str, str]]:
                entries, after = view(*args, **kwargs)
                if after is None:
                    return entries, {}
                query = {name: kwargs[name] for name in query_names if name in kwargs}
                return entries, next_page_link(query, after)

            listed = self.alt_response(
                400, description=f"page x page_size past {MAX_PAGE_DEPTH:,}: use after"
            )(linked)
            listed = self.response(200, schema(many=True), headers=LINK_HEADER)(listed)
            return self.arguments(arguments, location="query", as_kwargs=True)(listed)

        return decorator

    def login_required(
        self,
        *,
        token: Literal["access", "refresh", "any"] = "access",
        fresh: bool = False,
        admin: bool = False,
    ) -> Callable:
        """Require a valid token of this type (fresh, of an admin), and say so in the spec.

        Outermost of a view's decorators: a caller without a valid token learns that
        first (401), before anything about the request itself.
        """

        def decorator(view: Callable) -> Callable:
            @wraps(view)
            def allowed(*args, **kwargs):
                if admin and not current_user.is_admin:
                    abort(403, message="Only an admin may do this.")
                return view(*args, **kwargs)

            protected = jwt_required(
                fresh=fresh, refresh=token == "refresh", verify_type=token != "any"
            )(allowed)
            needed = "a fresh access token (from POST /login)" if fresh else TOKEN_NAMES[token]
            protected = self.doc(security=[{BEARER_AUTH: []}])(protected)
            protected = self.alt_response(
                401, description=f"Needs {needed}: missing, invalid, expired or revoked"
            )(protected)
            if admin:
                protected = self.alt_response(403, description="Only for admins")(protected)
            return protected

        return decorator

    def owner_only(
        self, load: Callable[..., Owned], current: Callable[[Any], Response] | None = None
    ) -> Callable:
        """The one way a view changes a store or what is in it: `load` finds what it changes
        from the view's own arguments (404 if it is not there: that it exists is public, as
        reads are), anyone but the store's owner or an admin is refused (403, documented
        here), and the view gets it as its first argument.

        With `current`, which renders it as its GET does, an If-Match that names another
        ETag is refused (412): `load` locks it, so that the comparison holds until the
        write commits, and of two writers sending one ETag, the second sees the first's
        change.

        Innermost of a view's decorators, below login_required and the arguments.
        """

        def decorator(view: Callable) -> Callable:
            @wraps(view)
            def guarded(view_self, *args, **kwargs):
                target = load(*args, **kwargs)
                if not (current_user.is_admin or target.owner_id == current_user.id):
                    abort(403, message=f"{NOT_THE_OWNER}.")
                # If-Match: * is any current representation: nothing to render.
                if current is not None and request.if_match and not request.if_match.star_tag:
                    refuse_unless_current(current(target))
                return view(view_self, target, *args, **kwargs)

            return self.alt_response(403, description=NOT_THE_OWNER)(guarded)

        return decorator

    def idempotent(self, scope: Callable[[], str] = user_scope) -> Callable:
        """Take an Idempotency-Key (idempotency.py), among the keys of `scope`, and say so
        in the spec. Outermost but for login_required and etag: the answer kept is the
        whole answer, and the key is the user's."""

        def decorator(view: Callable) -> Callable:
            @wraps(view)
            def keyed(*args, idempotency_key: str | None = None, **kwargs) -> Response:
                if idempotency_key is None:
                    return view(*args, **kwargs)
                return idempotency.answer_once(
                    scope(), idempotency_key, lambda: view(*args, **kwargs)
                )

            keyed = self.alt_response(
                409,
                description=f"A request with this {idempotency.HEADER} is still running: "
                "retry after Retry-After seconds",
                headers=RETRY_AFTER,
            )(keyed)
            keyed = self.alt_response(
                422, description=f"The {idempotency.HEADER} was sent with another request"
            )(keyed)
            keyed = self.alt_response(
                400, description=f"The {idempotency.HEADER} is not 1-255 printable characters"
            )(keyed)
            keyed = self.arguments(
                IdempotencyKeySchema, location="headers", as_kwargs=True, error_status_code=400
            )(keyed)
            for status in keyed._apidoc.get("success_status_codes", []):
                for response in keyed._apidoc["response"]["responses"][status]:
                    response["headers"] = {**response.get("headers", {}), **REPLAYED_HEADER}
            return keyed

        return decorator

    # Conditional requests (RFC 9110 section 13), through Flask-Smorest's @etag, which
    # documents them; but an ETag is the hash of the answer's bytes, so that every answer
    # is tagged the same way (GET /store/<id> is rendered by PostgreSQL, not dumped here),
    # and If-Match is optional unless REQUIRE_IF_MATCH is set.

    def _check_precondition(self) -> None:
        if (
            request.method in self.METHODS_NEEDING_CHECK_ETAG
            and not request.if_match
            and current_app.config["REQUIRE_IF_MATCH"]
        ):
            abort(
                428,
                message="Send If-Match with the ETag of the resource as you last read it "
                "(GET it for one): this server changes nothing blind.",
            )

    def _verify_check_etag(self) -> None:
        """owner_only compares If-Match, under the lock of the row it loads."""

    def _is_etag_enabled(self) -> bool:
        # Flask-Smorest looks the current Api up for this, twice a request; there is one.
        return not current_app.config.get("ETAG_DISABLED", False)

    def _set_etag_in_response(self, response: Response) -> None:
        if request.method not in self.METHODS_ALLOWING_SET_ETAG:
            return
        etag = generate_etag(response.get_data())
        response.set_etag(etag)
        # If-None-Match as RFC 9110 has it (weak comparison, or *), rather than Werkzeug's
        # make_conditional: that also writes a Date header, which gunicorn writes too
        # (twice, then), and costs more than the rest of this on every GET. The header is
        # looked for in the environ first: most GETs carry none (parsing costs as much as
        # hashing the answer).
        if (
            request.method in self.METHODS_CHECKING_NOT_MODIFIED
            and "HTTP_IF_NONE_MATCH" in request.environ
            and request.if_none_match.contains_weak(etag)
        ):
            response.status_code = 304

    def _prepare_etag_doc(self, doc: dict, doc_info: dict, *, method: str, **kwargs) -> dict:
        if not doc_info.get("etag"):
            return doc
        method = method.upper()
        responses = doc.setdefault("responses", {})
        for status in doc_info.get("success_status_codes", []):
            if method in self.METHODS_ALLOWING_SET_ETAG:
                success = responses[status]
                success["headers"] = {**success.get("headers", {}), **ETAG_HEADER}
        if method in self.METHODS_CHECKING_NOT_MODIFIED:
            doc.setdefault("parameters", []).append("IF_NONE_MATCH")
            responses[304] = {"description": "Not modified: your copy is current"}
        if method in self.METHODS_NEEDING_CHECK_ETAG:
            doc.setdefault("parameters", []).append("IF_MATCH")
            responses[412] = error_doc(
                "Changed since the read whose ETag If-Match names: read it again", ETAG_HEADER
            )
            responses[428] = error_doc("If-Match is missing, and REQUIRE_IF_MATCH is set")
        return doc


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


NOT_THE_OWNER = "Only the store's owner or an admin may change the store and what is in it"


# An answer for a client whose request cannot be carried out: status code and abort() fields.
Refusal = tuple[int, dict[str, Any]]


def not_found(model: type, ident: int) -> Refusal:
    return 404, {"message": f"{model.__name__.removesuffix('Model')} {ident} not found."}


def get_or_404(model: type[Model], ident: int, **get_options: Any) -> Model:
    instance = db.session.get(model, ident, **get_options)
    if instance is None:
        refuse(not_found(model, ident))
    return instance


def in_live_store(child: Model, ident: int) -> Model:
    """`child` (an item or tag, 404 as not found otherwise), once its store is share-locked
    until commit: a write into a store and the store's deletion wait for each other, so the
    write lands before the deletion (and goes with the store) or sees the store deleted.
    (FOR SHARE re-reads the row after the wait; SQLite's BEGIN IMMEDIATE serializes both.)"""
    store = select(StoreModel.id).where(
        StoreModel.id == child.store_id, StoreModel.deleted_at.is_(None)
    )
    if db.session.scalar(store.with_for_update(read=True)) is None:
        refuse(not_found(type(child), ident))
    return child


# SQLSTATEs (PostgreSQL, either driver) and SQLite's extended result codes, by kind.
CONSTRAINT_KINDS = {
    "23505": "unique",
    "23503": "foreign key",
    sqlite3.SQLITE_CONSTRAINT_UNIQUE: "unique",
    sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY: "unique",
    sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY: "foreign key",
}


def violated_constraint(error: IntegrityError) -> str | None:
    """Which kind of constraint the statement broke: "unique", "foreign key" or None.

    Told by code, never by message: PostgreSQL's messages are localised, and psycopg2
    and psycopg 3 name the code differently (pgcode, sqlstate) but share `diag`.
    """
    diagnostics = getattr(error.orig, "diag", None)
    code = diagnostics.sqlstate if diagnostics else getattr(error.orig, "sqlite_errorcode", None)
    return CONSTRAINT_KINDS.get(code)


def flush_or_abort(
    *, on_unique: Refusal | None = None, on_foreign_key: Refusal | None = None
) -> None:
    """Send the request's writes; a constraint they broke becomes the refusal given for it.

    Constraints, not look-ups beforehand, decide: they also hold against
    concurrent requests. A request with an Idempotency-Key writes holding it.
    """
    try:
        if claim := idempotency.pending():
            claim.take()
        db.session.flush()
    except IntegrityError as error:
        db.session.rollback()
        refusal = {"unique": on_unique, "foreign key": on_foreign_key}.get(
            violated_constraint(error)
        )
        if refusal is None:
            raise
        refuse(refusal)


def commit() -> None:
    """Commit the request's writes; with an Idempotency-Key, the answer is kept in the same
    transaction, so idempotency.answer_once commits them both once it has the answer."""
    if idempotency.pending() is None:
        db.session.commit()


def commit_or_abort(
    *, on_unique: Refusal | None = None, on_foreign_key: Refusal | None = None
) -> None:
    flush_or_abort(on_unique=on_unique, on_foreign_key=on_foreign_key)
    commit()


def refuse(refusal: Refusal) -> NoReturn:
    status, fields = refusal
    abort(status, **fields)


def created_links(**links: dict) -> dict:
    """`blp.doc` arguments giving a 201 response OpenAPI links, for clients and fuzzers."""
    return {"responses": {201: {"links": links}}}


def link(method: str, path: str, **parameters: str) -> dict:
    """A link to `method path`, each parameter taken from the named field of the response."""
    reference = path.replace("~", "~0").replace("/", "~1")
    return {
        "operationRef": f"#/paths/{reference}/{method}",
        "parameters": {name: f"$response.body#/{field}" for name, field in parameters.items()},
    }
