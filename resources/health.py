from flask.views import MethodView
from sqlalchemy import text

from db import read_outside_transactions
from schemas import HealthSchema
from web.blueprint import Blueprint

blp = Blueprint("health", __name__, description="Liveness of the API and its database")


@blp.route("/health")
class Health(MethodView):
    @blp.read(HealthSchema, tagged=False, errors={503: "The database is unreachable"})
    def get(self) -> dict:
        """Check that the API can reach its database (the primary)"""
        # An unreachable database raises OperationalError, which answers 503.
        read_outside_transactions(text("SELECT 1"))
        return {"status": "ok", "database": "reachable"}
