from datetime import UTC
from decimal import ROUND_HALF_UP, Decimal

from marshmallow import Schema, ValidationError, fields, post_load, validate

MAX_ID = 2**31 - 1  # PostgreSQL integer columns
MAX_PRICE = Decimal("99999999.99")  # Numeric(10, 2)
# Long enough for any passphrase, short enough that hashing stays cheap.
MAX_PASSWORD_LENGTH = 1024


# PostgreSQL text cannot hold NUL: refuse it here rather than fail in the database.
# As patterns, the rules also reach the OpenAPI spec, so clients see them.
NO_NUL = validate.Regexp(r"^[^\x00]*$", error="Must not contain NUL characters.")
# Blank: the characters str.isspace() calls whitespace, spelt out, since regex engines
# disagree on what \s means (ECMA 262, which OpenAPI names, leaves out \x1c-\x1f and \x85).
WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK_NO_NUL_PATTERN = rf"^[^\x00]*[^\x00{WHITESPACE}][^\x00]*$"


def not_blank_no_nul(value: str) -> None:
    """What NOT_BLANK_NO_NUL_PATTERN says, in linear time: Python's re takes quadratic time
    to reject a long input against that pattern (100 KB ending in NUL: 17 s), and marshmallow
    runs every validator even after Length failed."""
    if "\x00" in value or value.isspace():
        raise ValidationError("Must contain a non-blank character and no NUL characters.")


def Name(**kwargs) -> fields.String:  # noqa: N802 - used like a field class
    return fields.String(
        validate=[validate.Length(min=1, max=80), not_blank_no_nul],
        metadata={"example": "Books", "pattern": NOT_BLANK_NO_NUL_PATTERN},
        **kwargs,
    )


class Price(fields.Decimal):
    """A JSON number, rounded to cents (Numeric(10, 2)); dumped as a number, not a string."""

    def __init__(self, **kwargs) -> None:
        super().__init__(
            places=2,
            rounding=ROUND_HALF_UP,
            validate=validate.Range(min=0, max=MAX_PRICE),
            metadata={"example": 12.99, "description": "Rounded to cents."},
            **kwargs,
        )

    def _deserialize(self, value, attr, data, **kwargs) -> Decimal:
        # Strings and booleans would pass as numbers otherwise ("12.5", True).
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)

    def _serialize(self, value, attr, obj, **kwargs) -> float | None:
        return None if value is None else float(value)


def Id(strict: bool = True, **kwargs) -> fields.Integer:  # noqa: N802 - used like a field class
    # Query strings are text, so only JSON bodies can insist on a real number.
    return fields.Integer(strict=strict, validate=validate.Range(min=1, max=MAX_ID), **kwargs)


class PlainStoreSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = Name(required=True)
    owner_id = fields.Integer(
        dump_only=True,
        allow_none=True,
        metadata={"description": "The user who may change it (besides admins); null: admins only."},
    )


class PlainItemSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = Name(required=True)
    price = Price(required=True)
    description = fields.String(
        allow_none=True,
        validate=[validate.Length(max=10_000), NO_NUL],
        metadata={"example": "A short description."},
    )
    store_id = fields.Integer(dump_only=True)


class PlainTagSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = Name(required=True)
    store_id = fields.Integer(dump_only=True)


# Nested collections hold their first entries only (resources/listing.py): a representation
# costs the same whatever the size of what it nests.
NESTED_LIMIT = 10
# How deep page numbers may go (page x page_size): deeper, OFFSET would read and skip every
# row before the page. Elasticsearch's max_result_window, and like it we point to keysets.
MAX_PAGE_DEPTH = 10_000


def first_entries(schema: type[Schema], name: str, url: str) -> tuple[fields.Field, ...]:
    """The fields of a nested collection: its first entries by id, whether it has more, and
    the URL of the whole list (`url` formatted with the parent's id), as Stripe nests lists."""
    return (
        fields.List(
            fields.Nested(schema),
            attribute=f"first_{name}",
            dump_only=True,
            metadata={"description": f"The first {NESTED_LIMIT} {name}, in id order."},
        ),
        fields.Boolean(
            attribute=f"{name}_has_more",
            dump_only=True,
            metadata={"description": f"Whether there are more {name} than those: see {name}_url."},
        ),
        fields.Function(
            lambda parent: url.format(id=parent.id),
            dump_only=True,
            metadata={
                "type": "string",
                "description": f"All the {name}, page by page.",
                "example": url.format(id=1),
            },
        ),
    )


class StoreSchema(PlainStoreSchema):
    items, items_has_more, items_url = first_entries(PlainItemSchema, "items", "/store/{id}/item")
    tags, tags_has_more, tags_url = first_entries(PlainTagSchema, "tags", "/store/{id}/tag")


class ItemSchema(PlainItemSchema):
    store = fields.Nested(PlainStoreSchema, dump_only=True)
    tags, tags_has_more, tags_url = first_entries(PlainTagSchema, "tags", "/item/{id}/tag")


class ItemCreateSchema(PlainItemSchema):
    store_id = Id(required=True, metadata={"example": 1})


class ItemUpdateSchema(PlainItemSchema):
    """Any of an item's own fields; those left out keep their value."""

    def __init__(self, **kwargs) -> None:
        super().__init__(partial=True, **kwargs)


class TagSchema(PlainTagSchema):
    store = fields.Nested(PlainStoreSchema, dump_only=True)
    items, items_has_more, items_url = first_entries(PlainItemSchema, "items", "/tag/{id}/item")


def After(description: str) -> fields.Integer:  # noqa: N802 - used like a field class
    """The keyset of a list: the last id of the page before."""
    return fields.Integer(
        validate=validate.Range(min=0, max=MAX_ID), metadata={"description": description}
    )


class PageArgsSchema(Schema):
    page_size = fields.Integer(
        load_default=20, validate=validate.Range(min=1, max=100), metadata={"example": 20}
    )
    after = After(
        "Entries with a larger id than this, in id order: the next page starts after the last "
        "id of this one (the Link header says so). As cheap at the millionth entry as at the "
        "first."
    )
    page = fields.Integer(
        validate=validate.Range(min=1),
        metadata={
            "description": f"Page number, from 1, while page x page_size <= {MAX_PAGE_DEPTH:,}"
            "; deeper, use after. With after, pages are counted from there."
        },
    )


class ItemListArgsSchema(PageArgsSchema):
    store_id = Id(strict=False, metadata={"description": "Only the items of this store."})
    after = After(
        "The last item id you have: the next page starts after it. Without store_id the list "
        "goes store by store (by store id), each store's items in id order; with it, that "
        "store's items in id order. As cheap at the millionth item as at the first, and past "
        "deleted stores however big."
    )


# A deleted store's contents are counted this far: past it, "at least" (the count of a
# million rows would cost the delete 160 ms).
COUNTED_UP_TO = 10_000


class DeletedCountsSchema(Schema):
    items = fields.Integer(required=True)
    tags = fields.Integer(required=True)
    exact = fields.Boolean(
        required=True,
        metadata={
            "description": f"false: the counts stop at {COUNTED_UP_TO:,}, and a count of "
            f"{COUNTED_UP_TO:,} means at least that many"
        },
    )


class DeletedStoreSchema(PlainStoreSchema):
    deleted_at = fields.AwareDateTime(default_timezone=UTC, required=True)
    expire_time = fields.AwareDateTime(
        default_timezone=UTC,
        required=True,
        metadata={"description": "Until then POST /store/<id>/restore brings it back whole."},
    )
    deleted_by = fields.Integer(
        allow_none=True, required=True, metadata={"description": "The user who deleted it."}
    )


class StoreDeletionSchema(DeletedStoreSchema):
    message = fields.String(required=True)
    deleted = fields.Nested(
        DeletedCountsSchema, required=True, metadata={"description": "What went with it."}
    )


class StoreRestoreSchema(Schema):
    """No body restores the store as it was; a `name` renames it, for when a live store took
    its name meanwhile."""

    BODY_OPTIONAL = True

    name = Name()


class MessageSchema(Schema):
    message = fields.String(required=True)


class LinkSchema(MessageSchema):
    item = fields.Nested(PlainItemSchema, required=True)
    tag = fields.Nested(PlainTagSchema, required=True)


# What an Idempotency-Key may be: 1 to 255 printable ASCII characters (a UUID, say).
IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]+$"


class IdempotencyKeySchema(Schema):
    idempotency_key = fields.String(
        data_key="Idempotency-Key",
        validate=[
            validate.Length(min=1, max=255),
            validate.Regexp(IDEMPOTENCY_KEY_PATTERN, error="Use printable ASCII characters."),
        ],
        # No example: Swagger UI would fill it in, the same key for every request.
        metadata={
            "description": "A new unique string for each request, a UUID say: sent again "
            "with a retry of this very request, it gets the first answer again instead of "
            "running twice. Kept IDEMPOTENCY_KEY_HOURS (24) hours.",
        },
    )


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})
    database = fields.String(required=True, metadata={"example": "reachable"})


def Password(min_length: int = 1) -> fields.String:  # noqa: N802 - used like a field class
    return fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(min=min_length, max=MAX_PASSWORD_LENGTH),
        metadata={"example": "correct horse battery staple"},
    )


class UserSchema(Schema):
    """A user as the API shows one: never the password, so every field is always there."""

    id = fields.Integer(required=True)
    username = fields.String(required=True, metadata={"example": "alice"})
    email = fields.String(
        required=True,
        metadata={"example": "alice@example.com", "description": "Stored in lower case."},
    )
    role = fields.String(required=True, metadata={"example": "user"})


class UserCreateSchema(Schema):
    """What POST /register takes. A schema of its own rather than UserSchema with a
    write-only password: generated clients read `required` as present in responses too."""

    username = fields.String(
        required=True,
        validate=[
            validate.Length(min=3, max=80),
            validate.Regexp(r"^[A-Za-z0-9._-]+$", error="Use letters, digits, '.', '_' or '-'."),
        ],
        metadata={"example": "alice"},
    )
    email = fields.Email(
        required=True,
        validate=validate.Length(max=254),
        metadata={"example": "alice@example.com", "description": "Stored in lower case."},
    )
    password = Password(min_length=8)

    @post_load
    def lowercase_email(self, data: dict, **_kwargs) -> dict:
        # One mailbox, one account: Alice@Example.com and alice@example.com are the same.
        data["email"] = data["email"].lower()
        return data


class LoginSchema(Schema):
    # Bounded: the username is a key of the login throttle.
    username = fields.String(
        required=True, validate=[validate.Length(max=80), NO_NUL], metadata={"example": "alice"}
    )
    password = Password()


class DeviceCookieSchema(Schema):
    device = fields.String(
        metadata={"description": "The device cookie an earlier login to this account set."}
    )


class TokensSchema(Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)


class LogoutQuerySchema(Schema):
    all = fields.Boolean(
        load_default=False,
        metadata={"description": "Revoke every token of the user, not only this one."},
    )
