from datetime import UTC, datetime
from urllib.parse import urlsplit

from flask import url_for
from flask.views import MethodView
from flask_jwt_extended import current_user
from flask_smorest import abort
from sqlalchemy import func, select

from config.settings import current_settings
from db import db
from models import (
    StoreModel,
    UserModel,
    WebhookDeliveryModel,
    WebhookModel,
    WebhookResendModel,
)
from models.event import EventModel, feed_bounds
from models.queries import NotFoundError, get_live_one
from schemas import MessageSchema
from schemas.webhooks import (
    WebhookCreatedSchema,
    WebhookCreateSchema,
    WebhookDeliverySchema,
    WebhookSchema,
    WebhookUpdateSchema,
)
from security.ownership import require_owner
from web.blueprint import Blueprint
from web.idempotency import user_scope
from web.openapi import LOCATION_HEADER
from web.pagination import page_of
from web.transactions import ACCOUNT_DELETED, Conflict, flush
from webhooks.addresses import literal_address, refusal
from webhooks.signing import new_secret

blp = Blueprint(
    "webhooks", __name__, description="Webhooks: the events of your stores POSTed to your URL"
)

NOT_HERE = {404: "No webhook of yours with this id"}
# The store named can still be purged before the write commits: the foreign key tells.
STORE_VANISHED = {
    "fk_webhooks_store_id_stores": Conflict(
        404, lambda body, **_: str(NotFoundError(StoreModel, body["store_id"]))
    )
}
BAD_TARGET = {
    403: "The store is not yours",
    404: "No store with this id",
    422: "The URL or the store is not one events can go to",
}
NOT_MADE = {**BAD_TARGET, 409: "You have WEBHOOKS_PER_USER webhooks already: delete one first"}


def signature_header(name: str, description: str, example: str) -> dict:
    return {
        "name": name, "in": "header", "required": True, "description": description,
        "schema": {"type": "string", "example": example},
    }  # fmt: skip


# What a receiver gets (OpenAPI callbacks): each event POSTed to the webhook's url, signed.
DELIVERY = {
    "event": {
        "{$request.body#/url}": {
            "post": {
                "summary": "An event, as GET /events shows it, delivered to your URL",
                "description": "Signed as Standard Webhooks says: verify with the secret "
                "POST /webhooks answered. Answer 2xx within 5 s; anything else is tried again.",
                "parameters": [
                    signature_header(
                        "webhook-id", "The event's, the same on every retry.", "evt_42"
                    ),
                    signature_header(
                        "webhook-timestamp", "When it was sent, Unix seconds.", "1796364562"
                    ),
                    signature_header(
                        "webhook-signature",
                        "v1,<base64 HMAC-SHA256 of id.timestamp.body>",
                        "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
                    ),
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Event"}}
                    },
                },
                "responses": {"2XX": {"description": "Received: the next event follows."}},
            }
        }
    }
}


def own_webhook(webhook_id: int) -> WebhookModel:
    """The caller's webhook (an admin: anyone's), locked for the write; 404 otherwise, as
    if it were not there: a webhook is its owner's alone, unlike a store."""
    webhook = db.session.get(WebhookModel, webhook_id, with_for_update=True)
    if webhook is None or not (current_user.is_admin or webhook.owner_id == current_user.id):
        abort(404, message=f"Webhook {webhook_id} not found.")
    return webhook


def check_target(changes: dict) -> None:
    """Refuse, before any delivery, what could never be delivered: a URL naming an address
    that is not public (a name's address is checked at each delivery, when it is
    resolved), and a store the caller may not read events of."""
    if "url" in changes:
        parts = urlsplit(changes["url"])
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            abort(422, errors={"json": {"url": ["The port is not one of 1-65535."]}})
        address = literal_address(parts.hostname or "")
        why = address and refusal(address, current_settings().webhook_allowed_network_list)
        if why:
            message = f"{parts.hostname} is {address}, {why}: events go to public addresses only."
            abort(422, errors={"json": {"url": [message]}})
    if changes.get("store_id") is not None:
        require_owner(get_live_one(StoreModel, changes["store_id"]))


def refuse_past_the_limit() -> None:
    """409 once the caller has WEBHOOKS_PER_USER webhooks. Their user row is locked first:
    two POSTs at once count one after the other, not both below the limit."""
    db.session.get(UserModel, current_user.id, with_for_update=True)
    limit = current_settings().webhooks_per_user
    count = select(func.count()).where(WebhookModel.owner_id == current_user.id)
    if db.session.scalar(count) >= limit:
        abort(409, message=f"You have {limit} webhooks already (WEBHOOKS_PER_USER): delete "
              "one first.")  # fmt: skip


@blp.route("/webhooks")
class Webhooks(MethodView):
    @blp.listing(WebhookSchema, token="access")
    def get(self, **page: int):
        """List your webhooks (an admin: everyone's)"""
        mine = select(WebhookModel)
        if not current_user.is_admin:
            mine = mine.where(WebhookModel.owner_id == current_user.id)
        return page_of(mine, WebhookModel.id, **page)

    @blp.write(
        201, WebhookCreatedSchema, emits=None, idempotent=user_scope, body=WebhookCreateSchema,
        headers=LOCATION_HEADER, tagged=False, errors=NOT_MADE, callbacks=DELIVERY,
        conflicts={"fk_webhooks_owner_id_users": ACCOUNT_DELETED, **STORE_VANISHED},
    )  # fmt: skip
    def post(self, body: dict) -> tuple[WebhookModel, dict[str, str]]:
        """Make a webhook; its signing secret is in this answer, and in no other"""
        check_target(body)
        refuse_past_the_limit()
        webhook = WebhookModel(
            **body,
            owner_id=current_user.id,
            secret=new_secret(),
            created_at=datetime.now(UTC),
            # Events from now on: those committed before it was made are not its.
            delivered_through=feed_bounds()[0],
        )
        db.session.add(webhook)
        flush()
        return webhook, {"Location": url_for("webhooks.Webhook", webhook_id=webhook.id)}


@blp.route("/webhooks/<int:webhook_id>")
class Webhook(MethodView):
    @blp.read(WebhookSchema, token="access", tagged=False, errors=NOT_HERE)
    def get(self, webhook_id: int) -> WebhookModel:
        """Get one of your webhooks"""
        return own_webhook(webhook_id)

    @blp.write(
        200, WebhookSchema, emits=None, body=WebhookUpdateSchema, tagged=False,
        errors={**BAD_TARGET, 404: "No webhook of yours, or no store, with this id"},
        conflicts=STORE_VANISHED,
    )  # fmt: skip
    def patch(self, body: dict, webhook_id: int) -> WebhookModel:
        """Change a webhook: its URL, event types or store; or turn it on again"""
        webhook = own_webhook(webhook_id)
        check_target(body)
        if body.pop("enabled", False) and not webhook.enabled:
            # On again, from the event that failed, at once, with a new schedule of retries
            # and 3 days to give up again: failing since now (its first attempt then counts
            # the attempts at that event before it).
            webhook.disabled_at = webhook.disabled_reason = webhook.next_attempt_at = None
            webhook.failing_since = datetime.now(UTC)
        for name, value in body.items():
            setattr(webhook, name, value)
        return webhook

    @blp.write(200, MessageSchema, emits=None, tagged=False, errors=NOT_HERE)
    def delete(self, webhook_id: int) -> dict:
        """Delete a webhook, with the record of its deliveries"""
        db.session.delete(own_webhook(webhook_id))
        return {"message": f"Webhook {webhook_id} deleted."}


@blp.route("/webhooks/<int:webhook_id>/deliveries")
class Deliveries(MethodView):
    @blp.listing(WebhookDeliverySchema, token="access", errors=NOT_HERE)
    def get(self, webhook_id: int, **page: int):
        """List a webhook's delivery attempts, newest first"""
        own_webhook(webhook_id)
        attempts = select(WebhookDeliveryModel)
        return page_of(
            attempts, WebhookDeliveryModel.id, descending=True,
            parent=(WebhookDeliveryModel.webhook_id, webhook_id), **page,
        )  # fmt: skip


@blp.route("/webhooks/<int:webhook_id>/deliveries/<int:delivery_id>/resend")
class Resend(MethodView):
    @blp.write(
        202, MessageSchema, emits=None, tagged=False,
        errors={
            404: "No webhook of yours, or no delivery of it, with this id",
            410: "The event is older than the events kept (EVENTS_RETENTION_DAYS)",
        },
    )  # fmt: skip
    def post(self, webhook_id: int, delivery_id: int) -> dict:
        """Send a delivery's event again, now, whatever the endpoint's state; its attempt
        is listed with the others"""
        own_webhook(webhook_id)
        delivery = db.session.get(WebhookDeliveryModel, delivery_id)
        if delivery is None or delivery.webhook_id != webhook_id:
            abort(404, message=f"Webhook {webhook_id} has no delivery {delivery_id}.")
        if db.session.get(EventModel, delivery.event_id) is None:
            abort(410, message=f"Event {delivery.event_id} is no longer kept: it cannot be "
                  "sent again.")  # fmt: skip
        db.session.add(WebhookResendModel(webhook_id=webhook_id, event_id=delivery.event_id))
        return {"message": f"Event {delivery.event_id} will be sent again."}
