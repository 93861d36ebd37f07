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

    def _register_pagination_header(self) -> None:
        # On the wire the header is a string holding JSON; Flask-Smorest documents it as
        # an object, which no header value can be.
        self.spec.components.header(
            "PAGINATION",
            {
                "description": "Pagination metadata, as JSON: total, total_pages, first_page, "
                "last_page, page, previous_page, next_page",
                "schema": {"type": "string"},
                "example": '{"total": 42, "total_pages": 3, "first_page": 1, "last_page": 3, '
                '"page": 1, "next_page": 2}',
            },
            lazy=True,
        )
