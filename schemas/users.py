"""The representations of a user and their logins, in and out."""

from marshmallow import Schema, fields, post_load, validate

from schemas.field_types import NO_NUL, Password, WholeMatch


class UserSchema(Schema):
    """A user as the API shows one: never the password, so every field is always there."""

    id = fields.Integer(required=True)
    username = fields.String(required=True, metadata={"example": "alice"})
    email = fields.String(
        required=True,
        metadata={"example": "alice@example.com", "description": "Stored in lower case."},
    )
    role = fields.String(required=True, metadata={"example": "user"})


MIN_PASSWORD_LENGTH = 8


class UserCreateSchema(Schema):
    """What POST /register takes. A schema of its own rather than UserSchema with a
    write-only password: generated clients read `required` as present in responses too."""

    username = fields.String(
        required=True,
        validate=[
            validate.Length(min=3, max=80),
            WholeMatch(r"^[A-Za-z0-9._-]+$", error="Use letters, digits, '.', '_' or '-'."),
        ],
        metadata={"example": "alice", "description": "Unique in any case: 'Alice' is 'alice'."},
    )
    email = fields.Email(
        required=True,
        validate=validate.Length(max=254),
        metadata={"example": "alice@example.com", "description": "Stored in lower case."},
    )
    password = Password(min_length=MIN_PASSWORD_LENGTH)

    @post_load
    def lowercase_email(self, data: dict, **_kwargs) -> dict:
        # One mailbox, one account: Alice@Example.com and alice@example.com are the same.
        data["email"] = data["email"].lower()
        return data


class LoginSchema(Schema):
    # Bounded: the username is a key of the login throttle.
    username = fields.String(
        required=True,
        validate=[validate.Length(max=80), NO_NUL],
        metadata={"example": "alice", "description": "In any case: 'ALICE' logs in as alice."},
    )
    password = Password()


class PasswordChangeSchema(Schema):
    current_password = Password()
    new_password = Password(min_length=MIN_PASSWORD_LENGTH)


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
        metadata={"description": "End every login of the user, not only this token's."},
    )
