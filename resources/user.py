from functools import partial

from flask import after_this_request, request
from flask.views import MethodView
from flask_jwt_extended import current_user, get_jwt
from flask_smorest import abort
from sqlalchemy import select, update

from db import db, read_outside_transactions
from models import UserModel
from models.user import username_key
from replication.notes import forget_reader
from schemas import MessageSchema
from schemas.users import (
    DeviceCookieSchema,
    LoginSchema,
    LogoutQuerySchema,
    PasswordChangeSchema,
    TokensSchema,
    UserCreateSchema,
    UserSchema,
)
from security.devices import DEVICE_COOKIE, known_device, remember_device
from security.passwords import check_password, hashed_password, new_user, rehashed_password
from security.throttle import (
    attempt,
    client_of,
    limit,
    login_counts,
    restart_delays,
    succeeded,
)
from security.tokens import (
    BEARER_CHALLENGE,
    REVOKED,
    issue_tokens,
    refuse_replay,
    revoke_family,
    use_refresh_token,
)
from web.blueprint import Blueprint
from web.errors import not_found, refuse
from web.idempotency import address_scope
from web.openapi import RETRY_AFTER
from web.transactions import Conflict, end_transaction_early, flush

blp = Blueprint("users", __name__, description="Users, and the tokens that let them write")

# Two requests racing with one token: the second one to revoke it loses.
REVOKED_MEANWHILE = (401, {"message": REVOKED, "headers": BEARER_CHALLENGE})


DEVICE_COOKIE_HEADER = {
    "Set-Cookie": {
        "description": f"{DEVICE_COOKIE}=<a signed token>: this client logged in to this account "
        "before. Send it back with later logins (browsers and cookie jars do): they get an "
        "allowance of their own, which other clients' failed attempts do not use up.",
        "schema": {"type": "string"},
    }
}

TOO_MANY = ("Too many attempts: wait for Retry-After seconds", RETRY_AFTER)
TOO_MANY_LOGINS = (
    "Too many login attempts for this account or from your address: wait for Retry-After seconds."
)
TOO_MANY_REFRESHES = (
    "Too many refreshes of this login: wait for Retry-After seconds, or log in again with "
    "POST /login."
)


@blp.route("/register")
class Register(MethodView):
    @blp.write(
        201, UserSchema, emits=None, token=None, idempotent=address_scope, body=UserCreateSchema,
        errors={409: "The username (in any case) or the email is taken", 429: TOO_MANY},
        conflicts=dict.fromkeys(("ix_users_lower_username", "uq_users_email"), Conflict(409, (
            lambda body, **_: f"A user named {body['username']!r} (in any case) or with the "
            f"email {body['email']!r} exists: pick another, or log in."
        ))),
    )  # fmt: skip
    def post(self, body: dict) -> UserModel:
        """Create a user account (a few per client address and hour)"""
        attempt(
            (limit("register-address"), client_of(request.remote_addr)),
            refusal="Too many sign-ups from your address: wait for Retry-After seconds.",
        )
        # Hashed with no transaction open: attempt() committed its own.
        user = new_user(body)
        db.session.add(user)
        flush()
        return user


@blp.route("/login")
class Login(MethodView):
    @blp.write(
        200, TokensSchema, emits=None, token=None, tagged=False, body=LoginSchema,
        cookies=DeviceCookieSchema, headers=DEVICE_COOKIE_HEADER,
        errors={401: "Wrong username or password", 429: TOO_MANY},
    )  # fmt: skip
    def post(self, body: dict, cookies: dict) -> dict:
        """Log in: get a fresh access token and a refresh token

        The username may be written in any case. Attempts are throttled per account and
        client (a growing delay after 5), per account from new clients and per client
        address. A client that keeps the device cookie of a login has an allowance of its own
        for that account, which nobody else uses up.
        """
        username, password = username_key(body["username"]), body["password"]
        counted = login_counts(username, known_device(cookies.get(DEVICE_COOKIE), username))
        delays = attempt(*counted, refusal=TOO_MANY_LOGINS)
        found = select(UserModel).where(UserModel.named(username))
        user = read_outside_transactions(found).scalar()
        end_transaction_early()
        if not check_password(user, password):
            restart_delays(delays)
            abort(401, message="Wrong username or password.")
        new_hash = rehashed_password(user, password)
        succeeded(*counted)
        if new_hash:
            db.session.execute(
                update(UserModel).where(UserModel.id == user.id).values(password_hash=new_hash)
            )
        after_this_request(partial(remember_device, username=username))
        return issue_tokens(user, fresh=True)


@blp.route("/refresh")
class Refresh(MethodView):
    @blp.write(
        200, TokensSchema, emits=None, token="refresh", tagged=False,
        errors={429: (TOO_MANY_REFRESHES, RETRY_AFTER)},
    )  # fmt: skip
    def post(self) -> dict:
        """Trade a refresh token for a new (not fresh) access token and refresh token

        The refresh token sent is revoked: each one can be used once. One used again
        revokes every token of its login. A login is refreshed at most REFRESHES_PER_LOGIN
        (60) times an hour.
        """
        token = get_jwt()
        # The token's check began a transaction; the throttle reads with none open (through
        # PgBouncer, a request holding two server connections could starve the pool).
        end_transaction_early()
        attempt((limit("refresh-family"), token["fam"]), refusal=TOO_MANY_REFRESHES)
        if not use_refresh_token(token):
            # Another request used this refresh token a moment ago: a replay all the same.
            refuse_replay(token)
            refuse(REVOKED_MEANWHILE)
        return issue_tokens(current_user, fresh=False, refreshed=token)


@blp.route("/logout")
class Logout(MethodView):
    @blp.write(200, MessageSchema, emits=None, token="any", tagged=False, query=LogoutQuerySchema)
    def post(self, query: dict) -> dict:
        """End the login of the token sent (an access or a refresh token: either revokes
        both), or with all=true every login of the user"""
        forget_reader()
        if query["all"]:
            db.session.execute(
                update(UserModel)
                .where(UserModel.id == current_user.id)
                .values(token_version=UserModel.token_version + 1)
            )
            return {"message": "Logged out everywhere: every token of yours is revoked."}
        # RFC 9700 (4.14.2): logging out ends the refresh token too.
        if not revoke_family(get_jwt()):
            refuse(REVOKED_MEANWHILE)
        return {"message": "Logged out: every token of this login is revoked, refresh tokens too."}


@blp.route("/user/me")
class Me(MethodView):
    @blp.read(UserSchema, token="access")
    def get(self) -> UserModel:
        """Get the user the access token belongs to"""
        return current_user


@blp.route("/user/me/password")
class MyPassword(MethodView):
    @blp.write(
        200, TokensSchema, emits=None, fresh=True, tagged=False, body=PasswordChangeSchema,
        errors={403: "current_password is not your password", 429: TOO_MANY},
    )  # fmt: skip
    def put(self, body: dict) -> dict:
        """Change your password, and end every login of yours: the answer is a new login

        Needs a fresh access token and the current password, whose wrong guesses count as
        failed logins to the account. Every token issued before (this login's too) is
        revoked; the answer holds the tokens of a new login, fresh.
        """
        counted = login_counts(username_key(current_user.username), None)
        end_transaction_early()  # the token's check began one: see Refresh
        delays = attempt(*counted, refusal=TOO_MANY_LOGINS)
        if not check_password(current_user, body["current_password"]):
            restart_delays(delays)
            abort(
                403, message="current_password is not your password: send the one you log in with."
            )
        new_hash = hashed_password(body["new_password"])
        succeeded(*counted)
        # Raising the version refuses every token of the user at once (as logout?all=true).
        changed = (
            update(UserModel)
            .where(UserModel.id == current_user.id)
            .values(password_hash=new_hash, token_version=UserModel.token_version + 1)
            .returning(UserModel)
        )
        user = db.session.scalar(changed, execution_options={"populate_existing": True})
        return issue_tokens(user, fresh=True)


@blp.route("/user/<int:user_id>")
class User(MethodView):
    @blp.write(
        200, MessageSchema, emits=None, admin=True, tagged=False,
        errors={404: "No user with this id", 409: "The last admin cannot be deleted"},
    )  # fmt: skip
    def delete(self, user_id: int) -> dict:
        """Delete a user; their tokens stop working at once"""
        # The admins are locked first, in id order, then the user: of two admins deleting
        # each other at once, the second sees the first one's delete (and no deadlock).
        admins = db.session.scalars(
            select(UserModel.id)
            .where(UserModel.role == "admin")
            .order_by(UserModel.id)
            .with_for_update()
        ).all()
        user = db.session.get(UserModel, user_id, with_for_update=True)
        if user is None:
            refuse(not_found(UserModel, user_id))
        if admins == [user.id]:
            abort(
                409,
                message=f"User {user_id} is the last admin: make another one first "
                "(flask create-admin USERNAME).",
            )
        db.session.delete(user)
        return {"message": f"User {user_id} deleted; their tokens are revoked."}
