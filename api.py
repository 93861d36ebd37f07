"""Flask-Smorest's Api, with the error shape kept whole and the spec telling the truth."""

from flask_smorest import Api as SmorestApi
from werkzeug.exceptions import HTTPException, MethodNotAllowed


class Api(SmorestApi):
    def handle_http_exception(self, error: HTTPException):
        payload, status, headers = super().handle_http_exception(error)
        # Errors raised by Werkzeug itself (unknown route, wrong method) carry no
        # message of ours: their description says what went wrong.
        payload.setdefault("message", error.description)
        # Flask-Smorest drops the Allow header that a 405 must carry.
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            headers = {**headers, "Allow": ", ".join(sorted(error.valid_methods))}
        return payload, status, headers

    def _register_etag_headers(self) -> None:
        # Flask-Smorest's If-Match is required; ours only with REQUIRE_IF_MATCH=true.
        self.spec.components.parameter(
            "IF_NONE_MATCH",
            "header",
            {
                "name": "If-None-Match",
                "description": "The ETag of your copy: if it is still current, the answer is "
                "304 with no body",
                "schema": {"type": "string"},
            },
            lazy=True,
        )
        self.spec.components.parameter(
            "IF_MATCH",
            "header",
            {
                "name": "If-Match",
                "description": "The ETag of the resource as you read it: if it changed since, "
                "nothing is changed and the answer is 412 (required with REQUIRE_IF_MATCH=true)",
                "schema": {"type": "string"},
            },
            lazy=True,
        )

    def init_app(self, app, *args, **kwargs) -> None:
        super().init_app(app, *args, **kwargs)
        # Lists page with keysets and a Link header (resources/listing.py): Flask-Smorest's
        # X-Pagination header, and its PaginationMetadata schema, have no place in the spec.
        self.spec.components.schemas.pop("PaginationMetadata", None)
        self.spec.components.headers_lazy.pop("PAGINATION", None)
