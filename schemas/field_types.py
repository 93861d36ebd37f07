"""The fields our schemas are made of, and the limits they hold: as patterns and ranges they
reach the OpenAPI spec too, so clients see them."""

from base64 import urlsafe_b64decode, urlsafe_b64encode
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from marshmallow import Schema, ValidationError, fields, validate

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


class WholeMatch(validate.Regexp):
    """A pattern the whole value matches. Marshmallow's Regexp tries re.match, whose `$`
    lets a trailing newline through ("alice\n"); the spec shows the pattern with JSON
    Schema's meaning, where `$` is the very end."""

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self.error)
        return value


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
        price = super()._deserialize(value, attr, data, **kwargs)
        # -0.0 (or -0.004, rounded) is kept as 0.00: answered so, the write's answer and ETag
        # are the next read's.
        return price.copy_abs() if price.is_zero() else price

    def _serialize(self, value, attr, obj, **kwargs) -> float | None:
        return None if value is None else float(value)


def Sku() -> fields.String:  # noqa: N802 - used like a field class
    return fields.String(
        allow_none=True,
        validate=[validate.Length(min=1, max=64), NO_NUL],
        metadata={"example": "BK-0001", "description": "Unique among the store's items."},
    )


def Id(strict: bool = True, **kwargs) -> fields.Integer:  # noqa: N802 - used like a field class
    # Query strings are text, so only JSON bodies can insist on a real number.
    return fields.Integer(strict=strict, validate=validate.Range(min=1, max=MAX_ID), **kwargs)


# Nested collections hold their first entries only (web/pagination.py): a representation
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


def After(description: str) -> fields.Integer:  # noqa: N802 - used like a field class
    """The keyset of a list: the last id of the page before."""
    return fields.Integer(
        validate=validate.Range(min=0, max=MAX_ID), metadata={"description": description}
    )


class UpdatedAfter(fields.AwareDateTime):
    """The time a list of changes starts after (web.pagination.changes_page), in UTC."""

    def __init__(self) -> None:
        super().__init__(
            default_timezone=UTC,
            metadata={
                "description": "Only the entries changed since this time (ISO 8601; UTC if it "
                "names no offset), in the order of their updated_at, then id; the Link header's "
                "next page goes on from the last one (after: its id). To sync, pass the last "
                "updated_at you have, less the longest a write takes (docs/api.md, Syncing)."
            },
        )

    def _deserialize(self, value, attr, data, **kwargs) -> datetime:
        given = super()._deserialize(value, attr, data, **kwargs)
        try:
            return given.astimezone(UTC)
        except OverflowError:  # 9999-12-31T20:00:00-05:00 is past year 9999 in UTC
            raise ValidationError("Not a time UTC can hold: up to 9999-12-31T23:59:59Z.") from None


def Password(min_length: int = 1) -> fields.String:  # noqa: N802 - used like a field class
    return fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(min=min_length, max=MAX_PASSWORD_LENGTH),
        metadata={"example": "correct horse battery staple"},
    )


# A time as every representation of a store, an item or a tag shows it, in ISO 8601, UTC, to
# the microsecond, always with its fraction: text that sorts as the times do, and that goes
# into a URL as it is ("+00:00" would not). The databases write it so too (models.fields).
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class Timestamp(fields.DateTime):
    """A time set by the database, shown in TIMESTAMP_FORMAT."""

    def __init__(self, description: str) -> None:
        super().__init__(
            dump_only=True,
            metadata={"example": "2026-12-03T18:00:00.000000Z", "description": description},
        )

    def _serialize(self, value: datetime | None, attr, obj, **kwargs) -> str | None:
        return None if value is None else value.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def timestamps() -> tuple[Timestamp, Timestamp]:
    """A resource's created_at and updated_at."""
    return (
        Timestamp("When it was created."),
        Timestamp(
            "When its own fields last changed (a link between a tag and an item is no change)."
        ),
    )


CURSOR_BYTES = 8
# What cursor_of makes of a position from 0 to 2**63 - 1 (PostgreSQL's bigint): base64url
# without padding, its first character below 'g' (the top bit clear), its last one's two low
# bits zero (the 64 bits end there).
CURSOR_PATTERN = "^[A-Za-f][A-Za-z0-9_-]{9}[AEIMQUYcgkosw048]$"


def cursor_of(position: int) -> str:
    """The cursor clients see of a position in the event feed."""
    return urlsafe_b64encode(position.to_bytes(CURSOR_BYTES, "big")).decode().rstrip("=")


class Cursor(fields.Field):
    """A place in the event feed: opaque to clients (a position, base64url-encoded), as it
    is given by an event's `cursor` or the Link header's next page."""

    def __init__(self, metadata: dict | None = None, **kwargs) -> None:
        metadata = {
            "type": "string", "pattern": CURSOR_PATTERN, "example": "AAAAAAAAAAc",
            **(metadata or {}),
        }  # fmt: skip
        super().__init__(metadata=metadata, **kwargs)

    def _serialize(self, value: int | None, attr, obj, **kwargs) -> str | None:
        return None if value is None else cursor_of(value)

    def _deserialize(self, value, attr, data, **kwargs) -> int:
        try:
            raw = urlsafe_b64decode(str(value) + "=" * (-len(str(value)) % 4))
        except (ValueError, TypeError):
            raw = b""
        if len(raw) != CURSOR_BYTES or cursor_of(int.from_bytes(raw, "big")) != value:
            raise ValidationError(
                "Not a cursor of this feed: pass an event's cursor, or follow the Link header's "
                "next page, as they are; to start again, leave after out."
            )
        return int.from_bytes(raw, "big")
