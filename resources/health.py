from flask.views import MethodView
from sqlalchemy import text

from db import db
from resources.common import Blueprint
from schemas import HealthSchema

blp = Blueprint("health", __name__, description="Liveness of the API and its database")


@blp.route("/health")
class Health(MethodView):
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, description="The database is unreachable")
    def get(self) -> dict:
        """Check that the API can reach its database"""
        # An unreachable database raises OperationalError, which answers 503.
        db.session.execute(text("SELECT 1"))
        return {"status": "ok", "database": "reachable"}
