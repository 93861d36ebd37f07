"""The representations of a webhook endpoint and of its delivery attempts."""

from marshmallow import Schema, fields, validate

from schemas.events import EVENT_TYPES
from schemas.field_types import Id, Timestamp

MAX_URL_LENGTH = 2048


def webhook_fields(required: bool) -> dict[str, fields.Field]:
    """What a client sets of an endpoint: all of it when making one, any of it in a PATCH."""
    return {
        "url": fields.Url(
            required=required,
            schemes={"http", "https"},
            require_tld=False,
            validate=validate.Length(max=MAX_URL_LENGTH),
            metadata={
                "example": "https://hooks.example.com/stores",
                "description": "Where events are POSTed. It must resolve to a public address "
                "(not loopback, private, link-local or a cloud's metadata service), checked "
                "at each delivery; redirects are not followed.",
            },
        ),
        "event_types": fields.List(
            fields.String(validate=validate.OneOf(EVENT_TYPES)),
            validate=validate.Length(max=len(EVENT_TYPES)),
            **({"load_default": list} if required else {}),
            metadata={
                "example": ["store.deleted", "item.created"],
                "description": "The types of events sent; empty: every type.",
            },
        ),
        "store_id": Id(
            allow_none=True,
            **({"load_default": None} if required else {}),
            metadata={
                "example": None,
                "description": "Only this store's events (yours); null: all of yours.",
            },
        ),
    }


WebhookCreateSchema = Schema.from_dict(webhook_fields(required=True), name="WebhookCreate")


class WebhookUpdateSchema(Schema.from_dict(webhook_fields(required=False))):
    enabled = fields.Boolean(
        metadata={
            "example": True,
            "description": "true turns on an endpoint its failures turned off.",
        }
    )


class WebhookSchema(WebhookCreateSchema):
    id = fields.Integer(dump_only=True)
    enabled = fields.Boolean(dump_only=True)
    disabled_reason = fields.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "Why its deliveries stopped: the last attempt's failure."},
    )
    created_at = Timestamp("When it was made.")


class WebhookCreatedSchema(WebhookSchema):
    secret = fields.String(
        dump_only=True,
        metadata={
            "example": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "description": "The signing secret (Standard Webhooks), shown in this answer "
            "only: keep it where the receiver verifies signatures.",
        },
    )


class WebhookDeliverySchema(Schema):
    id = fields.Integer(dump_only=True)
    event_id = fields.Integer(dump_only=True)
    attempt = fields.Integer(dump_only=True, metadata={"description": "1 for the first."})
    attempted_at = Timestamp("When it was made.")
    status = fields.Integer(
        dump_only=True, allow_none=True, metadata={"description": "null: no answer."}
    )
    seconds = fields.Float(dump_only=True, metadata={"description": "Its latency."})
    error = fields.String(
        dump_only=True, allow_none=True, metadata={"description": "Why it failed."}
    )
    answer = fields.String(
        dump_only=True, allow_none=True, metadata={"description": "The start of the answer."}
    )
