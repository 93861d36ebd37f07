from decimal import Decimal

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

MAX_ID = 2**31 - 1  # PostgreSQL integer columns
MAX_PRICE = Decimal("99999999.99")  # Numeric(10, 2)


def reject_nul(value: str) -> None:
    # PostgreSQL text cannot hold NUL: refuse it here rather than fail in the database.
    if "\x00" in value:
        raise ValidationError("Must not contain NUL characters.")


def reject_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("Must contain a non-blank character.")


def Name(**kwargs) -> fields.String:  # noqa: N802 - used like a field class
    return fields.String(
        validate=[validate.Length(min=1, max=80), reject_nul, reject_blank],
        metadata={"example": "Books"},
        **kwargs,
    )


class Price(fields.Decimal):
    """A JSON number with at most two decimals, loaded as Decimal and dumped as a number."""

    def __init__(self, **kwargs) -> None:
        super().__init__(
            validate=validate.Range(min=0, max=MAX_PRICE),
            metadata={"example": 12.99},
            **kwargs,
        )

    def _deserialize(self, value, attr, data, **kwargs) -> Decimal:
        # Strings and booleans would pass as numbers otherwise ("12.5", True).
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        number = super()._deserialize(value, attr, data, **kwargs)
        if number.as_tuple().exponent < -2:
            raise ValidationError("Must have at most 2 decimal places.")
        return number

    def _serialize(self, value, attr, obj, **kwargs) -> float | None:
        return None if value is None else float(value)


def Id(strict: bool = True, **kwargs) -> fields.Integer:  # noqa: N802 - used like a field class
    # Query strings are text, so only JSON bodies can insist on a real number.
    return fields.Integer(strict=strict, validate=validate.Range(min=1, max=MAX_ID), **kwargs)


class PlainStoreSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = Name(required=True)


class PlainItemSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = Name(required=True)
    price = Price(required=True)
    description = fields.String(
        allow_none=True,
        validate=[validate.Length(max=10_000), reject_nul],
        metadata={"example": "A short description."},
    )
    store_id = fields.Integer(dump_only=True)


class PlainTagSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = Name(required=True)
    store_id = fields.Integer(dump_only=True)


class StoreSchema(PlainStoreSchema):
    items = fields.List(fields.Nested(PlainItemSchema), attribute="item_list", dump_only=True)
    tags = fields.List(fields.Nested(PlainTagSchema), attribute="tag_list", dump_only=True)


class ItemSchema(PlainItemSchema):
    store = fields.Nested(PlainStoreSchema, dump_only=True)
    tags = fields.List(fields.Nested(PlainTagSchema), dump_only=True)


class ItemCreateSchema(PlainItemSchema):
    store_id = Id(required=True)


class ItemUpdateSchema(PlainItemSchema):
    """Any of an item's own fields; those left out keep their value."""

    def __init__(self, **kwargs) -> None:
        super().__init__(partial=True, **kwargs)

    @validates_schema
    def require_a_change(self, data: dict, **kwargs) -> None:
        if not data:
            raise ValidationError("Give at least one of name, price, description.")


class TagSchema(PlainTagSchema):
    store = fields.Nested(PlainStoreSchema, dump_only=True)
    items = fields.List(fields.Nested(PlainItemSchema), dump_only=True)


class ItemQuerySchema(Schema):
    store_id = Id(strict=False)


class DeletedCountsSchema(Schema):
    items = fields.Integer(required=True)
    tags = fields.Integer(required=True)


class StoreDeletedSchema(Schema):
    message = fields.String(required=True)
    deleted = fields.Nested(DeletedCountsSchema, required=True)


class MessageSchema(Schema):
    message = fields.String(required=True)


class LinkSchema(MessageSchema):
    item = fields.Nested(PlainItemSchema, required=True)
    tag = fields.Nested(PlainTagSchema, required=True)


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})
    database = fields.String(required=True, metadata={"example": "reachable"})
