"""The composing decorators (web/blueprint.py) hand a view, by name, what they loaded and
parsed: `target` (the owner check's), `body`, `query` and `cookies`, beside the URL's ids."""

from types import SimpleNamespace

import flask_migrate
from flask.views import MethodView
from marshmallow import Schema, fields
from support import JWT_SECRET, bearer_of

from app import create_app
from config.settings import Settings
from db import db
from models import UserModel
from security.tokens import issue_tokens
from web.blueprint import Blueprint


class NameSchema(Schema):
    name = fields.String(required=True)


class VerboseSchema(Schema):
    verbose = fields.Boolean(required=True)


class DeviceSchema(Schema):
    device = fields.String(required=True)


class GotSchema(Schema):
    got = fields.Dict()


def thing(thing_id: int) -> SimpleNamespace:
    return SimpleNamespace(id=thing_id, owner_id=None)


probe = Blueprint("probe", __name__)


@probe.route("/probe/<int:thing_id>")
class Probe(MethodView):
    @probe.write(
        200, GotSchema, tagged=False, body=NameSchema, query=VerboseSchema,
        cookies=DeviceSchema, owner=thing, emits=None,
    )  # fmt: skip
    def post(self, cookies: dict, query: dict, thing_id: int, body: dict, target) -> dict:
        # In no order of the decorator's: each comes by its name.
        got = {"target": target.id, "body": body, "query": query, "cookies": cookies}
        return {"got": {**got, "thing_id": thing_id}}


def test_a_view_gets_what_its_decorator_loaded_and_parsed_by_name(tmp_path, request):
    app = create_app(
        Settings(database_url=f"sqlite:///{tmp_path / 'probe.db'}"),
        TESTING=True,
        JWT_SECRET_KEY=JWT_SECRET,
    )
    app.extensions["flask-smorest"]["apis"][""]["ext_obj"].register_blueprint(probe)
    with app.app_context():
        flask_migrate.upgrade(directory=str(request.config.rootpath / "migrations"))
        admin = UserModel(username="admin", email="a@example.com", password_hash="x", role="admin")
        db.session.add(admin)
        db.session.commit()
        with app.test_request_context():
            headers = bearer_of(issue_tokens(admin, fresh=True)["access_token"])
    client = app.test_client()
    client.set_cookie("device", "phone")

    answer = client.post("/probe/7?verbose=true", json={"name": "x"}, headers=headers)

    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["got"] == {
        "target": 7,
        "body": {"name": "x"},
        "query": {"verbose": True},
        "cookies": {"device": "phone"},
        "thing_id": 7,
    }
