"""Headers every answer carries: tokens are never cached, nothing is sniffed or framed, and
only the hosts the operator allows are served (Links are built from the Host)."""

import pytest
from support import PASSWORD, bearer_of
from support.api import assert_error, new_store, signed_in
from werkzeug.wsgi import host_is_trusted

import app as app_module
from app import create_app
from config.settings import Settings, SettingsError, load_settings

pytestmark = pytest.mark.sqlite_too


def test_token_answers_are_never_stored(anonymous, new_user):
    new_user("alice")
    login = anonymous.post("/login", json={"username": "alice", "password": PASSWORD})
    refresh = anonymous.post("/refresh", headers=bearer_of(login.get_json()["refresh_token"]))
    for answer in (login, refresh):
        assert answer.status_code == 200, answer.get_json()
        assert "access_token" in answer.get_json()
        assert answer.headers["Cache-Control"] == "no-store"


def test_every_answer_is_nosniff_and_unframeable(client, anonymous):
    new_store(client)
    answers = [
        anonymous.get("/swagger-ui"),
        anonymous.get("/openapi.json"),
        anonymous.get("/swagger-ui-assets/swagger-ui.css"),
        anonymous.get("/store"),
        anonymous.get("/nowhere"),
        client.post("/store", json={"name": ""}),
    ]
    for answer in answers:
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["X-Frame-Options"] == "SAMEORIGIN"
        assert answer.headers["Content-Security-Policy"] == "frame-ancestors 'self'"
    assert answers[0].status_code == 200


@pytest.mark.parametrize(
    "host", ["evil.example", "localhost.evil.example", "evil.example:80", "127.0.0.1.evil"]
)
def test_another_host_is_400_and_builds_no_link(client, host):
    for name in "AB":
        new_store(client, name)
    for headers in ({"Host": host}, {"Host": "localhost", "X-Forwarded-Host": host}):
        response = client.get("/store?page_size=1", headers=headers)
        if "X-Forwarded-Host" in headers:
            # No proxy is trusted (TRUSTED_PROXIES=0): its X-Forwarded-Host is ignored.
            assert response.headers["Link"].startswith("<http://localhost/store?")
            continue
        assert "Link" not in response.headers
        assert_error(response, 400, "is not served at")


def test_allowed_hosts_their_subdomains_and_those_a_trusted_proxy_names():
    settings = Settings(
        database_url="sqlite://", allowed_hosts="API.example.com, .example.org", trusted_proxies=1
    )
    client = create_app(settings, TESTING=True).test_client()

    def status(host: str, forwarded: str | None = None) -> int:
        headers = {"Host": host} | ({"X-Forwarded-Host": forwarded} if forwarded else {})
        return client.get("/openapi.json", headers=headers).status_code

    assert status("api.example.com") == status("api.example.com:8443") == 200
    # Host names are case-insensitive, and a final dot names the same host.
    assert status("API.Example.COM") == status("api.example.com.") == 200
    assert status("api.example.com.:8443") == status("EU.example.ORG") == 200
    assert status("eu.example.org") == status("a.b.example.org") == 200
    assert status("localhost") == status("example.com") == status("evil.example.com") == 400
    # Behind the trusted proxy, the host is the one it says the client asked for.
    assert status("localhost", forwarded="api.example.com") == 200
    assert status("api.example.com", forwarded="evil.example") == 400
    # Asked by address, by docker compose's healthcheck and Prometheus.
    for path in ("/health", "/metrics"):
        assert client.get(path, headers={"Host": "172.18.0.5:8000"}).status_code == 200


@pytest.mark.parametrize("hosts", [",", " , "])
def test_allowed_hosts_cannot_be_empty(hosts):
    with pytest.raises(SettingsError, match="ALLOWED_HOSTS"):
        load_settings(allowed_hosts=hosts)


def test_the_token_check_nginx_asks_before_an_upload(anonymous, new_user):
    """app.py's token_check, which deploy/nginx/nginx.conf's auth_request asks: 204 for a
    valid access token, 401 in the error shape for anything else; out of the spec."""
    new_user("alice")
    tokens = anonymous.post("/login", json={"username": "alice", "password": PASSWORD}).get_json()
    access = bearer_of(tokens["access_token"])
    assert anonymous.get("/_auth/token", headers=access).status_code == 204

    assert anonymous.post("/logout", headers=access).status_code == 200
    refused = [
        {},
        {"Authorization": "Bearer not-a-token"},
        bearer_of(tokens["refresh_token"]),
        access,  # revoked
    ]
    for headers in refused:
        assert_error(anonymous.get("/_auth/token", headers=headers), 401)
    assert not [
        path for path in anonymous.get("/openapi.json").get_json()["paths"] if "_auth" in path
    ]


def test_the_token_check_of_an_upload_asks_whose_store_it_is(app, client, anonymous, new_user):
    """With the upload's path (X-Original-URI), nginx also learns the caller may import into
    that store: not another's, a deleted or missing one (403: all auth_request passes on)."""
    new_user("alice")
    tokens = anonymous.post("/login", json={"username": "alice", "password": PASSWORD}).get_json()
    alice = signed_in(app, bearer_of(tokens["access_token"]))
    hers, others = alice.post("/store", json={"name": "Hers"}).get_json(), new_store(client)
    deleted = new_store(client, "Gone")
    client.delete(f"/store/{deleted['id']}")

    def check(caller, store_id: int) -> int:
        uri = {"X-Original-URI": f"/store/{store_id}/item/import?x=1"}
        return caller.get("/_auth/token", headers=uri).status_code

    assert check(alice, hers["id"]) == check(client, others["id"]) == 204
    for store_id in (others["id"], deleted["id"], 10**6, 10**20):
        assert check(alice, store_id) == 403


def test_options_answers_allow_with_no_content(anonymous):
    answer = anonymous.options("/store")
    assert answer.status_code == 204
    assert "Content-Type" not in answer.headers
    assert set(answer.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}


def test_each_host_is_judged_once(monkeypatch):
    """The verdict on a Host is kept: the same Host again costs no second look at
    ALLOWED_HOSTS (each of its names IDNA-encoded), whatever the answer."""
    judged = []

    def counted(host: str, allowed: list[str]) -> bool:
        judged.append(host)
        return host_is_trusted(host, allowed)

    monkeypatch.setattr(app_module, "host_is_trusted", counted)
    client = create_app(Settings(database_url="sqlite://"), TESTING=True).test_client()
    for host in ("localhost", "localhost", "LOCALHOST.", "evil.example", "evil.example"):
        expected = 400 if host == "evil.example" else 200
        assert client.get("/openapi.json", headers={"Host": host}).status_code == expected
    assert judged == ["localhost", "localhost", "evil.example"]


def test_a_security_header_a_view_wrote_is_kept_once(anonymous):
    """Swagger UI's page, and any answer that writes one of these headers itself, keeps its
    own value, in whatever case it wrote the name, and gets no second one."""
    app = create_app(Settings(database_url="sqlite://"), TESTING=True)

    @app.get("/framed")
    def framed():
        return "", 204, {"x-frame-options": "DENY"}

    answer = app.test_client().get("/framed", headers={"Host": "localhost"})
    assert answer.headers.getlist("X-Frame-Options") == ["DENY"]
    assert answer.headers.getlist("X-Content-Type-Options") == ["nosniff"]
