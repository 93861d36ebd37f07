"""GET /events/stream served as deployed (deploy/stream.sh: the stream process, gunicorn's
threaded worker), on its own and behind the shipped nginx: events as they commit, in feed
order, resumed without gaps or repeats, heartbeats, 410 for a stale cursor, 429 past a user's
streams, each user their own stores' events only."""

import http.client
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import migrated_app
from flask_jwt_extended import create_access_token, decode_token
from sqlalchemy import text
from support.api import new_item, new_store, signed_in
from support.http import server_env, sign_up

from models.event import prune_events
from schemas.field_types import cursor_of
from tools.gunicorn_server import API, Server, gunicorn, serving_as_written
from tools.throwaway_nginx import throwaway_nginx
from tools.throwaway_postgres import throwaway_postgres
from web.event_stream import CHECK_SECONDS

HEARTBEAT = 0.5
PER_USER = 2


@contextmanager
def stream_process(database_url: str, heartbeat: float, **popen) -> Iterator[Server]:
    """The stream process as docker-compose.yml runs it."""
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        **server_env(
            database_url,
            EVENT_STREAM_HEARTBEAT_SECONDS=str(heartbeat),
            EVENT_STREAMS_PER_USER=str(PER_USER),
            TRUSTED_PROXIES="1",
        ),
    }
    with serving_as_written(["sh", "deploy/stream.sh"], env, **popen) as (url, process):
        yield Server(url, process.pid)


@pytest.fixture
def stream_server(database_url: str) -> Iterator[Server]:
    """The stream process, with short heartbeats."""
    with stream_process(database_url, HEARTBEAT) as server:
        yield server


class Stream:
    """A client of one event stream, reading it message by message; `receive_buffer`: a
    client that reads slowly, the server's writes soon blocked."""

    def __init__(
        self, base_url: str, headers: dict[str, str], query: str = "", receive_buffer: int = 0
    ) -> None:
        address = urlsplit(base_url)
        self.connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
        if receive_buffer:
            self.connection.sock = socket.socket()
            self.connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            self.connection.sock.settimeout(10)
            self.connection.sock.connect((address.hostname, address.port))
        self.connection.request("GET", f"/events/stream{query}", headers=headers)
        self.response = self.connection.getresponse()

    def message(self) -> dict[str, str]:
        """The next message: its fields, comments under ":"; none once the stream ended."""
        fields: dict[str, str] = {}
        while line := self.response.readline():
            if line == b"\n":
                if fields:
                    return fields
                continue
            name, _, value = line.decode().rstrip("\n").partition(":")
            fields[name] = fields.get(name, "") + value.removeprefix(" ")
        return fields

    def events(self, count: int) -> list[dict]:
        """The next `count` events, as GET /events lists them, each with its `id:`."""
        events = []
        while len(events) < count:
            message = self.message()
            if "data" in message:
                assert message["event"] == json.loads(message["data"])["type"]
                events.append({**json.loads(message["data"]), "id": message["id"]})
        return events

    def close(self) -> None:
        # The answer holds the socket too (the server's answer says Connection: close).
        self.response.close()
        self.connection.close()


@contextmanager
def streaming(
    base_url: str, headers: dict[str, str], query: str = "", receive_buffer: int = 0
) -> Iterator[Stream]:
    stream = Stream(base_url, headers, query, receive_buffer)
    try:
        yield stream
    finally:
        stream.close()


def wait_for_a_place(base_url: str, headers: dict[str, str], within: float) -> None:
    """Until a new stream of the user's is let in (429 meanwhile): a closed one freed its
    place within `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        with streaming(base_url, headers) as again:
            if again.response.status == 200:
                return
            assert again.response.status == 429
        assert time.monotonic() < deadline, "the closed stream kept its place"
        time.sleep(within / 20)


def stream_error(stream: Stream, status: int) -> dict:
    """The one error shape, in JSON, before any stream starts."""
    assert stream.response.status == status
    assert stream.response.getheader("Content-Type") == "application/json"
    body = json.loads(stream.response.read())
    assert body["code"] == status
    assert set(body) <= {"code", "status", "message", "errors"}
    return body


@pytest.mark.pgbouncer_too
def test_events_come_as_they_commit_in_feed_order_and_resume_without_gaps_or_repeats(
    app, new_user, bearer, stream_server
):
    alice, bob = bearer(new_user("alice")), bearer(new_user("bob"))
    as_alice, as_bob = signed_in(app, alice), signed_in(app, bob)
    books, tools = new_store(as_alice, "Books")["id"], new_store(as_bob, "Tools")["id"]
    with streaming(stream_server.url, alice) as stream:
        assert stream.response.status == 200
        assert stream.response.getheader("Content-Type").startswith("text/event-stream")
        assert stream.response.getheader("X-Accel-Buffering") == "no"
        assert stream.message() == {"retry": "3000"}
        for n in range(3):
            new_item(as_alice, books, f"Novel {n}")
            new_item(as_bob, tools, f"Saw {n}")  # not alice's to see
        live = stream.events(3)
        # Nothing more for alice: a heartbeat next.
        started = time.monotonic()
        assert stream.message() == {"": "heartbeat"}
        assert time.monotonic() - started < 2 * HEARTBEAT + 0.5
    feed = signed_in(app, alice).get("/events").get_json()
    assert [{**each, "id": each["cursor"]} for each in feed[1:]] == live  # past store.created

    # Two more while alice was away: from the Last-Event-ID on, those two only, though
    # `after` names an older cursor (the URL an EventSource keeps).
    for n in range(3, 5):
        new_item(as_alice, books, f"Novel {n}")
    resumed = {**alice, "Last-Event-ID": live[-1]["id"]}
    with streaming(stream_server.url, resumed, f"?after={live[0]['id']}") as stream:
        assert [each["data"]["name"] for each in stream.events(2)] == ["Novel 3", "Novel 4"]
        assert stream.message() == {"": "heartbeat"}

    # An admin's stream: everybody's, and the filters of GET /events.
    admin = bearer(new_user("root", role="admin"))
    query = f"?after={feed[0]['cursor']}&store_id={tools}&type=item.created"
    with streaming(stream_server.url, admin, query) as stream:
        assert [each["data"]["name"] for each in stream.events(3)] == ["Saw 0", "Saw 1", "Saw 2"]
        assert stream.message() == {"": "heartbeat"}


@pytest.mark.one_driver
def test_stale_cursor_410_past_the_limit_429_a_closed_stream_frees_its_place_a_stop_ends_all(
    app, engine, new_user, bearer, stream_server
):
    alice = bearer(new_user("alice"))
    books = new_store(signed_in(app, alice), "Books")["id"]
    cursor = signed_in(app, alice).get("/events").get_json()[0]["cursor"]
    new_item(signed_in(app, alice), books)
    assert len(signed_in(app, alice).get("/events").get_json()) == 2
    with engine.begin() as connection:  # both pruned: the cursor of the first is too old
        connection.execute(text("UPDATE event_feed SET pruned_through = 2"))
    with streaming(stream_server.url, alice, f"?after={cursor}") as stale:
        assert "list the resources again" in stream_error(stale, 410)["message"]
    with streaming(stream_server.url, {**alice, "Last-Event-ID": "nonsense"}) as refused:
        assert "Last-Event-ID" in stream_error(refused, 400)["errors"]["headers"]

    with ExitStack() as open_streams:
        first = open_streams.enter_context(streaming(stream_server.url, alice))
        second = open_streams.enter_context(streaming(stream_server.url, alice))
        with streaming(stream_server.url, alice) as third:
            assert third.response.getheader("Retry-After") == "5"
            assert "EVENT_STREAMS_PER_USER" in stream_error(third, 429)["message"]
        # Another user's streams are counted apart.
        with streaming(stream_server.url, bearer(new_user("bob"))) as bobs:
            assert bobs.response.status == 200
        # A client gone: its stream ends at the next heartbeat, and frees its place.
        first.close()
        wait_for_a_place(stream_server.url, alice, 10 * HEARTBEAT)

        # The server stops: its streams end at once (their clients connect again).
        stopping = time.monotonic()
        os.kill(stream_server.pid, signal.SIGTERM)
        while second.message():
            pass
        assert time.monotonic() - stopping < 5 * HEARTBEAT


@pytest.mark.one_driver
def test_through_the_shipped_nginx_each_event_goes_on_as_it_comes(
    app, database_url, new_user, bearer, stream_server, tmp_path
):
    alice = bearer(new_user("alice"))
    books = new_store(signed_in(app, alice), "Books")["id"]
    api_log = tmp_path / "api.log"
    with (
        api_log.open("w") as log,
        gunicorn(
            API, server_env(database_url, TRUSTED_PROXIES="1"), "--workers", "1", stderr=log
        ) as api,
        throwaway_nginx(
            int(api.url.rsplit(":", 1)[1]), stream_port=int(stream_server.url.rsplit(":", 1)[1])
        ) as proxy,
        streaming(proxy, {**alice, "Host": "localhost"}) as stream,
    ):
        assert stream.message() == {"retry": "3000"}
        assert stream.message() == {"": "heartbeat"}  # small, and not held back
        committed = time.monotonic()
        new_item(signed_in(app, alice), books, "Lamp")
        assert stream.events(1)[0]["data"]["name"] == "Lamp"
        assert time.monotonic() - committed < 1.0

        # A reload: the old workers end their streams (worker_shutdown_timeout) rather than
        # stay, one set a reload, for as long as a stream is open. Their clients connect again.
        reloaded = time.monotonic()
        os.kill(child_named("nginx"), signal.SIGHUP)
        while stream.message():
            pass
        assert time.monotonic() - reloaded < 10 + 5
    # The stream process served it, none of the API's sync workers.
    assert "/events/stream" not in api_log.read_text()


def child_named(name: str) -> int:
    """This process's child running `name` (nginx's master), from /proc."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            line = stat.read_text()
        except OSError:  # ended meanwhile
            continue
        command = line[line.index("(") + 1 : line.rindex(")")]
        _state, parent, *_ = line[line.rindex(")") + 2 :].split()
        if command == name and int(parent) == os.getpid():
            return int(line.split()[0])
    raise AssertionError(f"no child process {name}")


def expiring_in(app, headers: dict[str, str], seconds: float) -> dict[str, str]:
    """Headers of an access token of the same login as `headers`', ending in `seconds`."""
    with app.app_context():
        claims = decode_token(headers["Authorization"].removeprefix("Bearer "))
        token = create_access_token(
            claims["sub"], expires_delta=timedelta(seconds=seconds),
            additional_claims={"ver": claims["ver"], "fam": claims["fam"]},
        )  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.one_driver
def test_a_stream_ends_once_its_token_is_no_good_and_frees_its_place_once_its_client_is_gone(
    app, database_url, new_user, bearer
):
    """Heartbeats a minute apart: neither waits for one. A stream asks every CHECK_SECONDS
    whether its token is still good and its client there."""
    alice, bob, carol = (bearer(new_user(name)) for name in ("alice", "bob", "carol"))
    within = CHECK_SECONDS + 3
    with stream_process(database_url, 60) as server, ExitStack() as open_streams:
        first = open_streams.enter_context(streaming(server.url, alice))
        open_streams.enter_context(streaming(server.url, alice))
        first.close()
        wait_for_a_place(server.url, alice, within)

        # Revoked (every login of bob's ended), and expired: each stream ends.
        with (
            streaming(server.url, bob) as revoked,
            streaming(server.url, expiring_in(app, carol, 2)) as expired,
        ):
            assert revoked.message() == expired.message() == {"retry": "3000"}
            assert signed_in(app, bob).post("/logout?all=true").status_code == 200
            ended = time.monotonic()
            for stream in (revoked, expired):
                while stream.message():
                    pass
            assert time.monotonic() - ended < within


@pytest.mark.one_driver
def test_a_stream_behind_events_pruned_before_it_sent_them_ends_and_is_told_410_again(
    app, engine, new_user, bearer, stream_server
):
    alice = bearer(new_user("alice"))
    books = new_store(signed_in(app, alice), "Books")["id"]
    head = signed_in(app, alice).get("/events").headers["Feed-Head"]
    with engine.begin() as connection:  # 3,000 events of 2 KB: more than a page behind
        connection.execute(
            text(
                "INSERT INTO events (type, resource_id, store_id, owner_id, occurred_at, data)"
                " SELECT 'item.created', n, :store, owner_id, now() - interval '30 days',"
                " json_build_object('pad', repeat('x', 2000))"
                " FROM stores, generate_series(1, 3000) n WHERE stores.id = :store"
            ),
            {"store": books},
        )
    signed_in(app, alice).get("/events")  # places them
    with streaming(stream_server.url, alice, f"?after={head}", receive_buffer=4096) as behind:
        assert behind.message() == {"retry": "3000"}
        time.sleep(1)  # its first page read, the server's writes blocked on the client
        with app.app_context():
            while prune_events(datetime.now(UTC), 1000):
                pass
        new_item(signed_in(app, alice), books, "Live")
        sent, deadline = [], time.monotonic() + 30
        while message := behind.message():
            if "data" in message:
                sent.append(message["id"])
            assert time.monotonic() < deadline, "the stream went on past the pruned events"
    assert 0 < len(sent) < 3000  # the first page's, then the end: none skipped
    resumed = {**alice, "Last-Event-ID": sent[-1]}
    with streaming(stream_server.url, resumed) as again:
        assert "list the resources again" in stream_error(again, 410)["message"]


@pytest.mark.one_driver
def test_a_last_event_id_of_the_feeds_start_is_a_cursor_like_any_other(
    app, new_user, bearer, stream_server
):
    """On an empty feed, Feed-Head names position 0: a client resuming from it misses
    nothing committed since."""
    alice = bearer(new_user("alice"))
    books = new_store(signed_in(app, alice), "Books")["id"]
    new_item(signed_in(app, alice), books, "Novel")
    with streaming(stream_server.url, {**alice, "Last-Event-ID": cursor_of(0)}) as stream:
        assert [each["type"] for each in stream.events(2)] == ["store.created", "item.created"]


def test_a_database_outage_ends_each_stream_cleanly_and_is_said_once(tmp_path):
    """Streams of two users, then the database stops: each stream ends with its answer whole
    (a cut chunked answer raises IncompleteRead here), no traceback in the log, and the
    reader says once that it gets no answer."""
    log = tmp_path / "stream.log"
    with throwaway_postgres() as cluster:
        url = cluster.url("psycopg2")
        migrated_app(url)
        with log.open("w") as stderr, stream_process(url, 60, stderr=stderr) as server:
            users = [sign_up(server.url, name) for name in ("alice", "bob")]
            with ExitStack() as open_streams:
                streams = [
                    open_streams.enter_context(streaming(server.url, each)) for each in users
                ]
                assert all(each.message() == {"retry": "3000"} for each in streams)
                cluster.stop()
                stopped = time.monotonic()
                for stream in streams:
                    while stream.message():
                        pass
                assert time.monotonic() - stopped < CHECK_SECONDS + 5
    said = log.read_text()
    assert "Traceback" not in said
    assert said.count("gets no answer") == 1
