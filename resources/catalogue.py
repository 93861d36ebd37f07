from datetime import UTC, datetime

from flask import Response, after_this_request, request, url_for
from flask.views import MethodView
from flask_jwt_extended import current_user, verify_jwt_in_request
from flask_smorest import abort

from catalogue.exporting import export_file
from catalogue.lines import CSV, JSON_LINES, MEDIA_TYPES
from catalogue.runs import keep_file, run_now
from config.settings import current_settings
from db import db
from jobs.deferral import start_import
from models import ItemImportModel, StoreModel
from models.queries import NotFoundError, get_live, get_live_one
from models.store import INCLUDE_DELETED
from replication.notes import read_the_primary
from schemas import ItemImportStatusSchema
from schemas.field_types import MAX_ID
from security.ownership import may_change
from web.blueprint import Blueprint
from web.bodies import StreamedBody, client_stalls_cut_off, spooled_body
from web.errors import not_found, refuse
from web.idempotency import user_scope
from web.openapi import LOCATION_HEADER
from web.transactions import ACCOUNT_DELETED, Conflict

blp = Blueprint(
    "catalogue", __name__,
    description="A store's items in and out in one request: JSON Lines or CSV files",
)  # fmt: skip

CATALOGUE_FILE = StreamedBody(
    examples={
        JSON_LINES: '{"name": "Novel", "price": 9.99, "tags": ["fiction", "paperback"]}\n'
        '{"name": "Atlas", "price": 30, "description": "Maps of the world."}\n',
        CSV: "name,price,description,tags\nNovel,9.99,,fiction|paperback\n"
        'Atlas,30,"Maps of the world.",\n',
    },
    max_bytes=lambda: current_settings().import_max_bytes,
    limit_name="IMPORT_MAX_BYTES",
)
EXPORTED = {
    200: {
        "description": "The store's items, one a line, with their tags' names: the file "
        "POST /store/<id>/item/import reads",
        "content": {media_type: {"schema": {"type": "string"}} for media_type in MEDIA_TYPES},
    }
}


def store_to_import_into(store_id: int) -> StoreModel:
    return get_live_one(StoreModel, store_id)


def may_import_into(store_id: int) -> bool:
    """Whether the caller may import into the store: there, live, and theirs (or they are an
    admin). Asked for nginx before it takes an upload's body (app.py's token check)."""
    store = get_live(StoreModel, store_id) if store_id <= MAX_ID else None
    return store is not None and may_change(store)


@blp.route("/store/<int:store_id>/item/import")
class ItemImport(MethodView):
    @blp.write(
        202, ItemImportStatusSchema, idempotent=user_scope, streamed=CATALOGUE_FILE,
        owner=store_to_import_into, tagged=False, headers=LOCATION_HEADER,
        # Its outcome is the event (import.succeeded, import.failed: catalogue/runs.py).
        emits=None,
        errors={
            400: "The body ended before its Content-Length, or without its last chunk",
            404: "No store with this id", 422: "The body is empty",
        },
        conflicts={
            # The store can still vanish before the import is kept (and its chunks with it).
            **dict.fromkeys(
                ("fk_item_imports_store_id_stores", "fk_item_import_chunks_import_id_item_imports"),
                Conflict(404, lambda store_id, **_: str(NotFoundError(StoreModel, store_id))),
            ),
            "fk_item_imports_user_id_users": ACCOUNT_DELETED,
        },
    )  # fmt: skip
    def post(self, target: StoreModel, store_id: int) -> tuple[ItemImportModel, dict]:
        """Import items from a JSON Lines or CSV file, all or nothing (its owner or an admin)

        Each line is an item as POST /item takes it, with the names of its tags, found in
        the store or created. GET the Location to see how it goes: a worker runs the import
        (on SQLite, this request does, and the answer tells how it went)."""
        body = spooled_body()
        if body.size == 0:
            abort(422, message="The body is empty: send one item a line.")
        item_import = ItemImportModel(
            store_id=target.id, user_id=current_user.id, media_type=request.mimetype,
            size=body.size, created_at=datetime.now(UTC),
        )  # fmt: skip
        db.session.add(item_import)
        db.session.flush()
        if db.session.get_bind().dialect.name == "postgresql":
            keep_file(item_import, body.file)
            # Once committed, so that the worker finds it.
            after_this_request(start_import(item_import.id))
        else:
            run_now(item_import, body.file)
        return item_import, {
            "Location": url_for("catalogue.ImportStatus", import_id=item_import.id)
        }


@blp.route("/import/<int:import_id>")
class ImportStatus(MethodView):
    @blp.read(
        ItemImportStatusSchema, token="access", tagged=False,
        errors={404: "No import with this id that you sent, or of a store you own"},
    )  # fmt: skip
    def get(self, import_id: int) -> ItemImportModel:
        """How an import goes: its state, lines read, and what it created or which lines
        are bad (who sent it, the store's owner, or an admin)"""
        item_import = db.session.get(ItemImportModel, import_id)
        if item_import is None or not (current_user.is_admin or sent_or_owned(item_import)):
            refuse(not_found(ItemImportModel, import_id))
        return item_import


def sent_or_owned(item_import: ItemImportModel) -> bool:
    store = db.session.get(
        StoreModel, item_import.store_id, execution_options={INCLUDE_DELETED: True}
    )
    return current_user.id in (item_import.user_id, store.owner_id)


@blp.route("/store/<int:store_id>/item/export")
class ItemExport(MethodView):
    @blp.read(
        None, tagged=False, content=EXPORTED,
        errors={
            404: "No store with this id (a deleted one's owner or an admin, with a token, "
            "can still export it until it expires)",
            406: f"Accept names neither {JSON_LINES} nor {CSV}",
        },
    )  # fmt: skip
    def get(self, store_id: int) -> Response:
        """Export a store's items with their tags' names as JSON Lines or CSV, by Accept,
        from one consistent snapshot (public, as reads are)"""
        accepted = request.accept_mimetypes
        # No Accept: anything goes, JSON Lines first.
        media_type = accepted.best_match(MEDIA_TYPES) if accepted else JSON_LINES
        if media_type is None:
            abort(406, message=f"Accept {JSON_LINES} or {CSV}.")
        require_exportable(store_id)
        read_the_primary()
        file = export_file(store_id, media_type)
        # Sent once the request's transaction ended too (it ends as the view returns).
        name = f"store-{store_id}.{'csv' if media_type == CSV else 'jsonl'}"
        response = Response(
            iter(lambda: file.read(SENT_BYTES), b""), mimetype=media_type,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )  # fmt: skip
        response.call_on_close(file.close)
        response.call_on_close(client_stalls_cut_off())
        return response


# Each piece of an export is handed to the socket whole (gunicorn's sendall).
SENT_BYTES = 64 * 1024


def require_exportable(store_id: int) -> None:
    """404 unless the store is live, or deleted and not expired and the caller (by an
    optional token) owns it or is an admin."""
    store = db.session.get(StoreModel, store_id, execution_options={INCLUDE_DELETED: True})
    if store is not None and store.deleted_at is not None:
        verify_jwt_in_request(optional=True)
        expired = store.expire_time <= datetime.now(UTC)
        owner = current_user and (current_user.is_admin or current_user.id == store.owner_id)
        if expired or not owner:
            store = None
    if store is None:
        refuse(not_found(StoreModel, store_id))
