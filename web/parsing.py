"""How requests' arguments are read: strictly, with a message that says what to fix."""

import json
import sys
from typing import Any, ClassVar, NoReturn

from flask import Request
from flask_smorest import abort
from marshmallow import RAISE, Schema, fields
from webargs.flaskparser import FlaskParser, is_json_request

MAX_DIGITS = sys.get_int_max_str_digits()


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
        # JSON that Python's parser cannot hold is the client's to fix (400), not a crash of
        # ours: nested deeper than the recursion limit, or an integer of more digits than
        # int() converts (sys.get_int_max_str_digits(), 4,300: a ValueError).
        try:
            body = super().load_json(request, schema)
        except RecursionError:
            abort(400, errors={"json": ["JSON nested too deeply."]})
        except ValueError:
            abort(400, errors={"json": [f"Integers in JSON have at most {MAX_DIGITS:,} digits."]})
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
