"""Flask-Smorest's Api, with the error shape kept whole and the spec telling the truth."""

from flask import Flask
from flask_smorest import Api as SmorestApi
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from web.openapi import spec_kwargs


class Api(SmorestApi):
    def __init__(self, app: Flask) -> None:
        super().__init__(app, spec_kwargs=spec_kwargs())

    def handle_http_exception(self, error: HTTPException):
        payload, status, headers = super().handle_http_exception(error)
        # Errors raised by Werkzeug itself (unknown route, wrong method) carry no
        # message of ours: their description says what went wrong.
        payload.setdefault("message", error.description)
        # Flask-Smorest drops the Allow header that a 405 must carry.
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            headers = {**headers, "Allow": ", ".join(sorted(error.valid_methods))}
        return payload, status, headers
