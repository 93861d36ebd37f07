"""A GET's reader, as replication.routing names it, is whoever the API would take the
request's token from: every Authorization header Flask-JWT-Extended reads a token from names
its reader (read-your-writes and monotonic reads hold for it), and no other does."""

import pytest
from flask_jwt_extended import verify_jwt_in_request
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt import PyJWTError

from replication.routing import bearer_token

FORMS = [
    "Bearer {t}", "Bearer  {t}", "Bearer\t{t}", " Bearer {t} ", "Basic eHg=, Bearer {t}",
    "Bearer {t}, Basic eHg=", "Bearer {t},", ",Bearer {t}", "bearer {t}", "BEARER {t}",
    "Bearer", "Bearer {t} more", "{t}", "Token {t}", "Bearer {t}, Bearer {t}", "Bearer,{t}",
    "", ",", "Bearer {t}\t,\tBasic eHg=",
]  # fmt: skip


@pytest.mark.sqlite_too
def test_every_header_the_api_takes_a_token_from_names_its_reader(app, admin_headers):
    token = admin_headers["Authorization"].removeprefix("Bearer ")
    for form in FORMS:
        header = form.format(t=token)
        with app.test_request_context(headers={"Authorization": header}):
            try:
                taken = verify_jwt_in_request() is not None
            except (JWTExtendedException, PyJWTError):
                taken = False
            assert (bearer_token() == token) == taken, repr(header)
