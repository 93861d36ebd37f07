"""One delivery attempt, against receivers on 127.0.0.1: the guard decides on the address
the name resolves to, redirects are not followed, a receiver cannot hold the attempt or fill
its memory, and what arrives is signed as Standard Webhooks says."""

import time
from contextlib import suppress
from datetime import UTC, datetime
from ipaddress import ip_network

import pytest
from standardwebhooks import Webhook

from tools.webhook_receiver import webhook_receiver
from webhooks.sending import ANSWER_LIMIT, TIMEOUT_SECONDS, send
from webhooks.signing import new_secret, signed_headers

LOOPBACK = [ip_network("127.0.0.0/8"), ip_network("::1")]
BODY = b'{"type": "item.created", "data": {"id": 1}}'


def test_loopback_is_not_sent_to_unless_allowed_and_the_attempt_says_why():
    with webhook_receiver() as (receiver, url):
        for target in (url, url.replace("127.0.0.1", "localhost")):
            attempt = send(target, BODY, {})
            assert attempt.status is None
            assert not attempt.delivered
            assert "loopback" in attempt.error
            assert "WEBHOOK_ALLOWED_NETWORKS" in attempt.error
        time.sleep(0.2)
        assert receiver.received == []


def test_an_ipv6_form_of_loopback_is_refused_too():
    with webhook_receiver() as (receiver, url):
        port = url.rsplit(":", 1)[1]
        attempt = send(f"http://[::ffff:127.0.0.1]:{port}/", BODY, {})
        assert "a loopback address (127.0.0.1, inside it)" in attempt.error
        assert receiver.received == []


def test_only_http_urls_are_sent_to():
    attempt = send("file:///etc/passwd", BODY, {}, LOOPBACK)
    assert "http://" in attempt.error


def test_a_signed_delivery_arrives_and_verifies_with_the_standard_webhooks_library():
    secret = new_secret()
    headers = signed_headers(secret, "msg_1", BODY, datetime.now(UTC))
    with webhook_receiver() as (receiver, url):
        attempt = send(url.replace("127.0.0.1", "localhost") + "/hooks", BODY, headers, LOOPBACK)
        assert attempt.status == 204, attempt
        assert attempt.delivered
        [arrived] = receiver.wait_for(1)
    assert arrived.path == "/hooks"
    assert arrived.body == BODY
    # The name, not the address connected to, as the URL gave it.
    assert arrived.headers["Host"] == url.replace("http://127.0.0.1", "localhost")
    assert Webhook(secret).verify(arrived.body, arrived.headers) == {
        "type": "item.created",
        "data": {"id": 1},
    }
    with pytest.raises(Exception, match="signature"):
        Webhook(new_secret()).verify(arrived.body, arrived.headers)


def redirect_to(location: str):
    def answer(handler) -> None:
        handler.send_response(307)
        handler.send_header("Location", location)
        handler.end_headers()

    return answer


def test_a_redirect_is_not_followed():
    with webhook_receiver() as (elsewhere, elsewhere_url):
        with webhook_receiver(redirect_to(elsewhere_url)) as (receiver, url):
            attempt = send(url, BODY, {}, LOOPBACK)
            assert attempt.status == 307
            assert "307" in attempt.error
            assert len(receiver.received) == 1
        assert elsewhere.received == []


def failing(handler) -> None:
    handler.send_response(500)
    handler.send_header("Content-Length", "6")
    handler.end_headers()
    handler.wfile.write(b"broken")


def test_a_failed_answer_is_kept_for_the_owner_to_read():
    with webhook_receiver(failing) as (_receiver, url):
        attempt = send(url, BODY, {}, LOOPBACK)
    assert attempt.status == 500
    assert not attempt.delivered
    assert attempt.answer == b"broken"


def endless(handler) -> None:
    handler.send_response(200)
    handler.end_headers()
    for _ in range(10_000):
        handler.wfile.write(b"x" * 1024)


def test_only_the_start_of_an_endless_answer_is_read():
    with webhook_receiver(endless) as (_receiver, url):
        attempt = send(url, BODY, {}, LOOPBACK)
    assert attempt.delivered
    assert len(attempt.answer) == ANSWER_LIMIT
    assert attempt.seconds < TIMEOUT_SECONDS


def silent(handler) -> None:
    time.sleep(4)


def dripping(handler) -> None:
    handler.send_response(200)
    handler.end_headers()
    for _ in range(40):
        handler.wfile.write(b"x")
        handler.wfile.flush()
        time.sleep(0.1)


def dribbling_headers(handler) -> None:
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    with suppress(OSError):  # the attempt gave up: its connection shut
        for _ in range(40):
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(0.25)


@pytest.mark.slow
@pytest.mark.parametrize("answer", [silent, dripping, dribbling_headers])
def test_a_receiver_that_holds_the_attempt_is_left_after_the_timeout(answer):
    with webhook_receiver(answer) as (_receiver, url):
        attempt = send(url, BODY, {}, LOOPBACK, timeout=1)
    assert attempt.seconds < 1.5
    if answer is not dripping:
        assert attempt.status is None
        assert "within 1 s" in attempt.error
    else:
        assert attempt.delivered
        assert 0 < len(attempt.answer) < 40
