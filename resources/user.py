from functools import partial

from flask import after_this_request, request
from flask.views import MethodView
from flask_jwt_extended import current_user, get_jwt
from flask_smorest import abort
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from auth import (
    BEARER_CHALLENGE,
    DEVICE_COOKIE,
    REVOKED,
    check_password,
    issue_tokens,
    known_device,
    limit,
    login_counts,
    new_user,
    rehashed_password,
    remember_device,
    revoke,
    revoke_family,
)
from db import db, read_outside_transactions
from models import UserModel
from resources.common import (
    RETRY_AFTER,
    Blueprint,
    address_scope,
    commit_or_abort,
    get_or_404,
    refuse,
)
from schemas import (
    DeviceCookieSchema,
    LoginSchema,
    LogoutQuerySchema,
    MessageSchema,
    TokensSchema,
    UserCreateSchema,
    UserSchema,
)
from throttle import attempt, client_of, restart_delays, succeeded

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

TOO_MANY = {
    "description": "Too many attempts: wait for Retry-After seconds",
    "headers": RETRY_AFTER,
}


@blp.route("/register")
class Register(MethodView):
    @blp.etag
    @blp.idempotent(scope=address_scope)
    @blp.arguments(UserCreateSchema)
    @blp.response(201, UserSchema)
    @blp.alt_response(409, description="The username or the email is taken")
    @blp.alt_response(429, **TOO_MANY)
    def post(self, user_data: dict) -> UserModel:
        """Create a user account (a few per client address and hour)"""
        attempt(
            (limit("register-address"), client_of(request.remote_addr)),
            refusal="Too many sign-ups from your address: wait for Retry-After seconds.",
        )
        # Hashed with no transaction open: attempt() committed its own.
        user = new_user(user_data)
        db.session.add(user)
        commit_or_abort(
            on_unique=(
                409,
                {"message": "A user with this username or email exists: pick another, or log in."},
            )
        )
        return user


@blp.route("/login")
class Login(MethodView):
    @blp.arguments(LoginSchema)
    @blp.arguments(DeviceCookieSchema, location="cookies")
    @blp.response(200, TokensSchema, headers=DEVICE_COOKIE_HEADER)
    @blp.alt_response(401, description="Wrong username or password")
    @blp.alt_response(429, **TOO_MANY)
    def post(self, credentials: dict, cookies: dict) -> dict:
        """Log in: get a fresh access token and a refresh token

        Attempts are throttled per account and client (a growing delay after 5), per account
        from new clients and per client address. A client that keeps the device cookie of a
        login has an allowance of its own for that account, which nobody else uses up.
        """
        username, password = credentials["username"], credentials["password"]
        counted = login_counts(username, known_device(cookies.get(DEVICE_COOKIE), username))
        delays = attempt(
            *counted,
            refusal="Too many login attempts for this account or from your address: "
            "wait for Retry-After seconds.",
        )
        found = select(UserModel).where(UserModel.username == username)
        user = read_outside_transactions(found).scalar()
        # Argon2 takes a tenth of a second: with no transaction open, no lock and no pooled
        # server connection is held meanwhile.
        db.session.commit()
        if not check_password(user, password):
            restart_delays(delays)
            abort(401, message="Wrong username or password.")
        new_hash = rehashed_password(user, password)
        succeeded(*counted)
        if new_hash:
            db.session.execute(
                update(UserModel).where(UserModel.id == user.id).values(password_hash=new_hash)
            )
        db.session.commit()
        after_this_request(partial(remember_device, username=username))
        return issue_tokens(user, fresh=True)


@blp.route("/refresh")
class Refresh(MethodView):
    @blp.login_required(token="refresh")
    @blp.response(200, TokensSchema)
    def post(self) -> dict:
        """Trade a refresh token for a new (not fresh) access token and refresh token

        The refresh token sent is revoked: each one can be used once. One used again
        revokes every token of its login.
        """
        token = get_jwt()
        revoke(token)
        try:
            db.session.commit()
        except IntegrityError:
            # Another request used this refresh token a moment ago: a replay all the same.
            db.session.rollback()
            revoke_family(token)
            refuse(REVOKED_MEANWHILE)
        return issue_tokens(current_user, fresh=False, family=token.get("fam"))


@blp.route("/logout")
class Logout(MethodView):
    @blp.login_required(token="any")
    @blp.arguments(LogoutQuerySchema, location="query")
    @blp.response(200, MessageSchema)
    def post(self, query: dict) -> dict:
        """Revoke the token sent (an access or a refresh token), or with all=true every token"""
        if query["all"]:
            db.session.execute(
                update(UserModel)
                .where(UserModel.id == current_user.id)
                .values(token_version=UserModel.token_version + 1)
            )
            message = "Logged out everywhere: every token of yours is revoked."
        else:
            revoke(get_jwt())
            message = "Logged out: this token is revoked."
        commit_or_abort(on_unique=REVOKED_MEANWHILE)
        return {"message": message}


@blp.route("/user/me")
class Me(MethodView):
    @blp.login_required()
    @blp.etag
    @blp.response(200, UserSchema)
    def get(self) -> UserModel:
        """Get the user the access token belongs to"""
        return current_user


@blp.route("/user/<int:user_id>")
class User(MethodView):
    @blp.login_required(admin=True)
    @blp.response(200, MessageSchema)
    @blp.alt_response(404, description="No user with this id")
    @blp.alt_response(409, description="The last admin cannot be deleted")
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
        user = get_or_404(UserModel, user_id, with_for_update=True)
        if admins == [user.id]:
            abort(
                409,
                message=f"User {user_id} is the last admin: make another one first "
                "(flask create-admin USERNAME).",
            )
        db.session.delete(user)
        db.session.commit()
        return {"message": f"User {user_id} deleted; their tokens are revoked."}
