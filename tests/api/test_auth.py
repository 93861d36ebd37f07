"""Users and tokens, through HTTP: register, login, refresh, logout, roles, failures."""

from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from flask_jwt_extended import create_access_token, decode_token
from sqlalchemy import text
from support import PASSWORD, bearer_of
from support.api import assert_error, link, new_item, new_store, new_tag

from app import create_app
from config.settings import Settings

ALICE = {"username": "alice", "email": "Alice@Example.com", "password": PASSWORD}


def register(client, **changes) -> dict:
    response = client.post("/register", json={**ALICE, **changes})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def log_in(client, username: str = "alice", password: str = PASSWORD) -> dict:
    response = client.post("/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def claims(app, token: str) -> dict:
    with app.app_context():
        return decode_token(token)


def assert_unauthorized(response, message_part: str) -> None:
    assert_error(response, 401, message_part)
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.sqlite_too
def test_register_returns_the_user_without_any_password(anonymous, sql):
    user = register(anonymous)
    assert user == {"id": 1, "username": "alice", "email": "alice@example.com", "role": "user"}
    stored_hash = sql("SELECT password_hash FROM users")[0][0]
    assert stored_hash.startswith("$argon2id$")
    assert PASSWORD not in stored_hash


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", "al"),
        ("username", "a" * 81),
        ("username", "alice smith"),
        ("username", "alice\n"),  # re.match's "$" let it by
        ("email", "not-an-email"),
        ("password", "seven77"),
        ("password", "x" * 1025),
    ],
)
def test_register_validates_each_field(anonymous, field, value):
    body = assert_error(anonymous.post("/register", json={**ALICE, field: value}), 422)
    assert list(body["errors"]["json"]) == [field]


@pytest.mark.sqlite_too
def test_a_taken_username_in_any_case_or_email_is_a_conflict(anonymous, sql):
    register(anonymous)
    other = "other@example.com"
    taken_username = anonymous.post("/register", json={**ALICE, "email": other})
    in_capitals = anonymous.post("/register", json={**ALICE, "username": "ALICE", "email": other})
    taken_email = anonymous.post(
        "/register", json={**ALICE, "username": "alice2", "email": "ALICE@example.COM"}
    )
    assert_error(taken_username, 409, "A user named 'alice' (in any case) or with the email")
    assert_error(in_capitals, 409, "named 'ALICE' (in any case)")
    assert_error(taken_email, 409, "with the email 'alice@example.com' exists")
    assert sql("SELECT username FROM users") == [("alice",)]


@pytest.mark.sqlite_too
def test_login_takes_the_username_in_any_case(anonymous, sql):
    register(anonymous, username="Alice")
    # One account, one count: a case of its own is no fresh allowance of guesses.
    for written in ("alice", "ALICE", "aLiCe"):
        anonymous.post("/login", json={"username": written, "password": "wrong password"})
    assert sql("SELECT key, hits FROM throttles WHERE key LIKE 'login-account:%'") == [
        ("login-account:alice", 3)
    ]
    for written in ("Alice", "alice", "ALICE"):
        log_in(anonymous, written)
    # Only ASCII letters have a case: the Kelvin sign is no "k".
    register(anonymous, username="kate", email="kate@example.com")
    kelvin = anonymous.post("/login", json={"username": "\u212aate", "password": PASSWORD})
    assert_error(kelvin, 401, "Wrong username or password")


@pytest.mark.sqlite_too
def test_login_gives_a_fresh_access_token_and_a_refresh_token(app, anonymous):
    user = register(anonymous)
    tokens = log_in(anonymous)
    access, refresh = claims(app, tokens["access_token"]), claims(app, tokens["refresh_token"])
    assert (access["type"], access["fresh"], access["sub"]) == ("access", True, str(user["id"]))
    assert (refresh["type"], refresh["sub"]) == ("refresh", str(user["id"]))
    me = anonymous.get("/user/me", headers=bearer_of(tokens["access_token"]))
    assert me.get_json() == user


class CountingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__()
        self.verifications = 0

    def verify(self, hash: str, password: str) -> bool:
        self.verifications += 1
        return super().verify(hash, password)


def test_an_unknown_username_costs_a_verification_too(app, anonymous, monkeypatch):
    # So that the time of a refusal does not tell which usernames exist.
    hasher = CountingHasher()
    monkeypatch.setitem(app.config, "PASSWORD_HASHER", hasher)
    register(anonymous)
    anonymous.post("/login", json={"username": "nobody", "password": PASSWORD})
    anonymous.post("/login", json={"username": "alice", "password": "wrong password"})
    assert hasher.verifications == 2


def test_wrong_password_and_unknown_user_get_the_same_401(anonymous):
    register(anonymous)
    wrong_password = anonymous.post("/login", json={"username": "alice", "password": "wrong!!!"})
    unknown_user = anonymous.post("/login", json={"username": "bob", "password": PASSWORD})
    assert assert_error(wrong_password, 401) == assert_error(unknown_user, 401)
    assert wrong_password.get_json()["message"] == "Wrong username or password."


@pytest.mark.sqlite_too
def test_refresh_rotates_and_a_replayed_refresh_token_is_refused(app, anonymous):
    register(anonymous)
    first = log_in(anonymous)
    refreshed = anonymous.post("/refresh", headers=bearer_of(first["refresh_token"]))
    assert refreshed.status_code == 200
    second = refreshed.get_json()
    assert claims(app, second["access_token"])["fresh"] is False
    assert second["refresh_token"] != first["refresh_token"]

    # The rotated token works once: the next one works too, once.
    third = anonymous.post("/refresh", headers=bearer_of(second["refresh_token"]))
    assert third.status_code == 200
    assert_unauthorized(
        anonymous.post("/refresh", headers=bearer_of(second["refresh_token"])), "revoked"
    )


@pytest.mark.sqlite_too
def test_a_login_refreshed_many_times_keeps_one_row(app, anonymous, sql):
    register(anonymous)
    login = log_in(anonymous)
    family = claims(app, login["refresh_token"])["fam"]
    used = []
    for _ in range(20):
        used.append(login["refresh_token"])
        login = anonymous.post("/refresh", headers=bearer_of(login["refresh_token"])).get_json()

    assert sql("SELECT used_generation, revoked FROM token_families") == [(20, False)]
    refreshes = "SELECT key, hits FROM throttles WHERE key LIKE 'refresh-family:%'"
    assert sql(refreshes) == [(f"refresh-family:{family}", 20)]
    # Every one traded is refused, the oldest too; and that revokes the login.
    assert_unauthorized(anonymous.post("/refresh", headers=bearer_of(used[0])), "revoked")
    assert sql("SELECT used_generation, revoked FROM token_families") == [(20, True)]
    assert_unauthorized(
        anonymous.get("/user/me", headers=bearer_of(login["access_token"])), "revoked"
    )


@pytest.mark.sqlite_too
def test_a_replayed_refresh_token_revokes_its_whole_family(app, anonymous):
    register(anonymous)
    stolen = log_in(anonymous)
    legit = anonymous.post("/refresh", headers=bearer_of(stolen["refresh_token"])).get_json()
    elsewhere = log_in(anonymous)  # another login: another family
    assert claims(app, legit["refresh_token"])["fam"] == claims(app, stolen["refresh_token"])["fam"]
    assert (
        claims(app, elsewhere["refresh_token"])["fam"] != claims(app, legit["refresh_token"])["fam"]
    )

    replay = anonymous.post("/refresh", headers=bearer_of(stolen["refresh_token"]))

    assert_unauthorized(replay, "revoked")
    # Every token of the family is refused from now on, access tokens too.
    assert_unauthorized(
        anonymous.post("/refresh", headers=bearer_of(legit["refresh_token"])), "revoked"
    )
    assert_unauthorized(
        anonymous.get("/user/me", headers=bearer_of(legit["access_token"])), "revoked"
    )
    assert_unauthorized(
        anonymous.get("/user/me", headers=bearer_of(stolen["access_token"])), "revoked"
    )
    # Another login's tokens are not.
    assert (
        anonymous.get("/user/me", headers=bearer_of(elsewhere["access_token"])).status_code == 200
    )
    assert (
        anonymous.post("/refresh", headers=bearer_of(elsewhere["refresh_token"])).status_code == 200
    )


def test_each_kind_of_token_only_where_it_belongs(anonymous):
    register(anonymous)
    tokens = log_in(anonymous)
    refresh_as_access = anonymous.get("/user/me", headers=bearer_of(tokens["refresh_token"]))
    access_as_refresh = anonymous.post("/refresh", headers=bearer_of(tokens["access_token"]))
    assert_unauthorized(refresh_as_access, "Only non-refresh tokens are allowed")
    assert_unauthorized(access_as_refresh, "Only refresh tokens are allowed")


@pytest.mark.sqlite_too
def test_logout_ends_the_login_of_the_token_sent_refresh_token_included(anonymous):
    register(anonymous)
    tokens, other_login = log_in(anonymous), log_in(anonymous)
    access, refresh = bearer_of(tokens["access_token"]), bearer_of(tokens["refresh_token"])
    refreshed = anonymous.post("/refresh", headers=refresh).get_json()

    assert anonymous.post("/logout", headers=access).status_code == 200

    assert_unauthorized(anonymous.get("/user/me", headers=access), "revoked")
    assert_unauthorized(anonymous.post("/logout", headers=access), "revoked")
    # RFC 9700 4.14.2: the login's refresh token, however refreshed, ends with it.
    for token in (refreshed["access_token"], refreshed["refresh_token"]):
        assert_unauthorized(anonymous.post("/logout", headers=bearer_of(token)), "revoked")
    assert_unauthorized(
        anonymous.post("/refresh", headers=bearer_of(refreshed["refresh_token"])), "revoked"
    )
    # Another login is not this one.
    other = bearer_of(other_login["access_token"])
    assert anonymous.get("/user/me", headers=other).status_code == 200

    # Logging out with a refresh token ends its access tokens too.
    other_refresh = bearer_of(other_login["refresh_token"])
    assert anonymous.post("/logout", headers=other_refresh).status_code == 200
    assert_unauthorized(anonymous.get("/user/me", headers=other), "revoked")
    assert_unauthorized(anonymous.post("/refresh", headers=other_refresh), "revoked")


def change_password(client, tokens: dict, current: str = PASSWORD, new: str = "a new passphrase"):
    return client.put(
        "/user/me/password",
        json={"current_password": current, "new_password": new},
        headers=bearer_of(tokens["access_token"]),
    )


@pytest.mark.sqlite_too
def test_a_new_password_ends_every_login_and_answers_a_new_one(app, anonymous, new_user, bearer):
    register(anonymous)
    mine, elsewhere = log_in(anonymous), log_in(anonymous)
    bystander = bearer(new_user("bob"))

    changed = change_password(anonymous, mine)

    assert changed.status_code == 200
    new_login = changed.get_json()
    assert claims(app, new_login["access_token"])["fresh"] is True
    for login in (mine, elsewhere):
        assert_unauthorized(
            anonymous.get("/user/me", headers=bearer_of(login["access_token"])), "log in again"
        )
        assert_unauthorized(
            anonymous.post("/refresh", headers=bearer_of(login["refresh_token"])), "log in again"
        )
    assert (
        anonymous.get("/user/me", headers=bearer_of(new_login["access_token"])).status_code == 200
    )
    assert (
        anonymous.post("/refresh", headers=bearer_of(new_login["refresh_token"])).status_code == 200
    )
    assert anonymous.get("/user/me", headers=bystander).status_code == 200
    wrong = anonymous.post("/login", json={"username": "alice", "password": PASSWORD})
    assert_error(wrong, 401, "Wrong username or password")
    log_in(anonymous, password="a new passphrase")


@pytest.mark.sqlite_too
def test_a_new_password_needs_a_fresh_token_and_the_current_password(anonymous, sql):
    register(anonymous)
    login = log_in(anonymous)
    refreshed = anonymous.post("/refresh", headers=bearer_of(login["refresh_token"])).get_json()
    before = sql("SELECT password_hash, token_version FROM users")

    not_fresh = change_password(anonymous, refreshed)
    wrong = change_password(anonymous, login, current="not my password")
    too_short = change_password(anonymous, login, new="short")

    assert_unauthorized(not_fresh, "fresh token")
    assert_error(wrong, 403, "current_password is not your password")
    body = assert_error(too_short, 422)
    assert list(body["errors"]["json"]) == ["new_password"]
    assert sql("SELECT password_hash, token_version FROM users") == before
    # The wrong guess counted as a failed login to the account.
    assert sql("SELECT key, hits FROM throttles WHERE key LIKE 'login-account:%'") == [
        ("login-account:alice", 1)
    ]


def test_guessing_the_current_password_waits_as_failed_logins_do(anonymous):
    register(anonymous)
    login = log_in(anonymous)
    guesses = [change_password(anonymous, login, current=f"guess {n}") for n in range(6)]
    assert [guess.status_code for guess in guesses] == [403] * 5 + [429]
    assert int(guesses[-1].headers["Retry-After"]) >= 1


@pytest.mark.sqlite_too
def test_logout_all_revokes_every_token_of_the_user_only(anonymous, new_user, bearer):
    register(anonymous)
    first, second = log_in(anonymous), log_in(anonymous)
    bystander = bearer(new_user("bob"))

    response = anonymous.post("/logout?all=true", headers=bearer_of(first["access_token"]))

    assert response.status_code == 200
    for token in (first["access_token"], second["access_token"]):
        assert_unauthorized(anonymous.get("/user/me", headers=bearer_of(token)), "log in again")
    assert_unauthorized(
        anonymous.post("/refresh", headers=bearer_of(second["refresh_token"])), "log in again"
    )
    assert anonymous.get("/user/me", headers=bystander).status_code == 200
    # Logging in again works at once.
    again = bearer_of(log_in(anonymous)["access_token"])
    assert anonymous.get("/user/me", headers=again).status_code == 200


def test_expired_and_forged_tokens_are_refused(app, anonymous, new_user):
    user = new_user("alice")
    with app.app_context():
        expired = create_access_token(
            str(user.id), additional_claims={"ver": 0}, expires_delta=timedelta(seconds=-1)
        )
    with create_app(
        Settings(database_url="sqlite://"), TESTING=True, JWT_SECRET_KEY="another-" * 8
    ).app_context():
        forged = create_access_token(str(user.id), fresh=True, additional_claims={"ver": 0})

    assert_unauthorized(anonymous.get("/user/me", headers=bearer_of(expired)), "expired")
    assert_unauthorized(anonymous.get("/user/me", headers=bearer_of(forged)), "Signature")
    assert_unauthorized(anonymous.get("/user/me", headers=bearer_of("not.a.jwt")), "Invalid")
    assert_unauthorized(
        anonymous.get("/user/me", headers={"Authorization": "Basic YWxpY2U6cHc="}), "Bearer"
    )
    assert_unauthorized(anonymous.get("/user/me"), "Missing Authorization Header")


@pytest.mark.sqlite_too
def test_reads_are_public_and_every_write_needs_a_token(client, anonymous):
    store = new_store(client)
    item = new_item(client, store["id"])
    tag = new_tag(client, store["id"])
    reads = [
        "/store",
        f"/store/{store['id']}",
        "/item",
        f"/item/{item['id']}",
        f"/store/{store['id']}/item",
        f"/store/{store['id']}/tag",
        f"/tag/{tag['id']}",
    ]
    for path in reads:
        assert anonymous.get(path).status_code == 200, path

    writes = [
        ("post", "/store", {"name": "Toys"}),
        ("put", f"/store/{store['id']}", {"name": "Toys"}),
        ("delete", f"/store/{store['id']}", None),
        ("post", "/item", {"name": "Ball", "price": 1, "store_id": store["id"]}),
        ("put", f"/item/{item['id']}", {"price": 2}),
        ("delete", f"/item/{item['id']}", None),
        ("post", f"/store/{store['id']}/tag", {"name": "toys"}),
        ("delete", f"/tag/{tag['id']}", None),
        ("post", f"/item/{item['id']}/tag/{tag['id']}", None),
        ("delete", f"/item/{item['id']}/tag/{tag['id']}", None),
    ]
    before = client.get(f"/store/{store['id']}").get_json()
    for method, path, body in writes:
        response = getattr(anonymous, method)(path, json=body)
        assert_unauthorized(response, "Missing Authorization Header")
    assert client.get(f"/store/{store['id']}").get_json() == before
    assert client.get("/store").get_json() == [before]


def test_any_signed_in_user_may_write(client, anonymous, new_user, bearer):
    headers = bearer(new_user("bob"))
    store = anonymous.post("/store", json={"name": "Bob's"}, headers=headers)
    assert store.status_code == 201
    item = {"name": "Pen", "price": 1, "store_id": store.get_json()["id"]}
    assert anonymous.post("/item", json=item, headers=headers).status_code == 201


@pytest.mark.sqlite_too
def test_the_cascading_delete_needs_a_fresh_token_of_the_owner_or_an_admin(
    anonymous, new_user, bearer, sql
):
    owner = new_user("olga")
    store = new_store_of(anonymous, bearer(owner))
    not_owner = anonymous.delete(f"/store/{store['id']}", headers=bearer(new_user("bob")))
    not_fresh = anonymous.delete(f"/store/{store['id']}", headers=bearer(owner, fresh=False))

    assert_error(not_owner, 403, "Only the store's owner or an admin")
    assert_unauthorized(not_fresh, "fresh token")
    counts = "SELECT (SELECT count(*) FROM stores), (SELECT count(*) FROM items), "
    counts += "(SELECT count(*) FROM tags), (SELECT count(*) FROM items_tags)"
    assert sql(counts) == [(1, 1, 1, 1)]  # nothing deleted

    deleted = anonymous.delete(f"/store/{store['id']}", headers=bearer(owner))
    assert deleted.status_code == 200
    assert deleted.get_json()["deleted"] == {"items": 1, "tags": 1, "links": 1, "exact": True}


def new_store_of(client, headers: dict[str, str]) -> dict:
    """A store with an item linked to a tag, made by the user of `headers`."""
    client.environ_base["HTTP_AUTHORIZATION"] = headers["Authorization"]
    store = new_store(client)
    link(client, new_item(client, store["id"])["id"], new_tag(client, store["id"])["id"])
    del client.environ_base["HTTP_AUTHORIZATION"]
    return store


@pytest.mark.sqlite_too
def test_an_admin_deletes_a_user_whose_tokens_then_fail(anonymous, new_user, bearer, sql):
    admin = bearer(new_user("root", role="admin"))
    bob = new_user("bob")
    bobs_token = bearer(bob)

    assert_error(anonymous.delete(f"/user/{bob.id}", headers=bobs_token), 403, "Only an admin")
    response = anonymous.delete(f"/user/{bob.id}", headers=admin)

    assert response.status_code == 200
    assert sql("SELECT username FROM users") == [("root",)]
    assert_unauthorized(anonymous.get("/user/me", headers=bobs_token), "deleted")
    assert_error(anonymous.delete(f"/user/{bob.id}", headers=admin), 404, f"User {bob.id}")


@pytest.mark.sqlite_too
def test_the_last_admin_cannot_be_deleted(anonymous, new_user, bearer, sql):
    root = new_user("root", role="admin")
    refused = anonymous.delete(f"/user/{root.id}", headers=bearer(root))
    assert_error(refused, 409, "last admin")

    second = new_user("second", role="admin")
    assert anonymous.delete(f"/user/{root.id}", headers=bearer(second)).status_code == 200
    assert sql("SELECT username FROM users WHERE role = 'admin'") == [("second",)]


def test_a_password_hash_never_leaves_the_server(anonymous, new_user, bearer, sql):
    register(anonymous)
    tokens = log_in(anonymous)
    headers = bearer_of(tokens["access_token"])
    responses = [
        anonymous.get("/user/me", headers=headers),
        anonymous.post("/refresh", headers=bearer_of(tokens["refresh_token"])),
        anonymous.post("/register", json=ALICE),
        anonymous.delete("/user/1", headers=bearer(new_user("root", role="admin"))),
    ]
    stored_hash = sql("SELECT password_hash FROM users WHERE username = 'root'")[0][0]
    for response in responses:
        text = response.get_data(as_text=True)
        assert "argon2" not in text
        assert stored_hash not in text
        assert PASSWORD not in text


def test_login_rehashes_a_password_hashed_with_other_parameters(
    app, anonymous, engine, sql, monkeypatch
):
    monkeypatch.setitem(app.config, "PASSWORD_HASHER", PasswordHasher())  # as deployed
    register(anonymous)
    weaker = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    with engine.begin() as connection:
        connection.execute(text("UPDATE users SET password_hash = :hash"), {"hash": weaker})

    log_in(anonymous)

    rehashed = sql("SELECT password_hash FROM users")[0][0]
    assert rehashed != weaker
    assert not PasswordHasher().check_needs_rehash(rehashed)
    log_in(anonymous)  # the new hash holds the same password


@pytest.mark.parametrize("secret", [None, "too-short"])
def test_the_app_refuses_to_start_without_a_strong_secret(monkeypatch, secret):
    monkeypatch.delenv("JWT_SECRET_KEY", raising=False)
    if secret:
        monkeypatch.setenv("JWT_SECRET_KEY", secret)
    with pytest.raises(RuntimeError, match="shorter than 32 bytes") as refusal:
        create_app(Settings(database_url="sqlite://"))
    assert "secrets.token_hex(32)" in str(refusal.value)


def test_debug_and_testing_run_without_a_secret(monkeypatch):
    monkeypatch.delenv("JWT_SECRET_KEY", raising=False)
    for app in (
        create_app(Settings(database_url="sqlite://"), DEBUG=True),
        create_app(Settings(database_url="sqlite://"), TESTING=True),
    ):
        assert len(app.config["JWT_SECRET_KEY"]) >= 32
