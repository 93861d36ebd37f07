"""gunicorn's sync worker (gunicorn.conf.py), and its threaded worker (the event streams'
process, docker-compose.yml's stream service), with the answers gunicorn writes itself, to a
request it could not read (a malformed line, header or chunk; a line or header past its
limits), in the API's one error shape instead of gunicorn's HTML page."""

import json
import threading

from gunicorn.workers.gthread import ThreadWorker
from gunicorn.workers.sync import SyncWorker

from web.event_stream import EVENT_HUB

MESSAGES = {
    400: "The request is malformed",
    403: "The request is forbidden",
    414: "Keep the request line under 8190 bytes",
    417: "Send no Expect header but 100-continue",
    431: "Send at most 100 headers, each under 8190 bytes",
    501: "Send the body whole or chunked, with no other transfer coding",
}


class JsonErrors:
    def handle_error(self, req, client, addr, exc) -> None:
        # gunicorn's handler chooses the status and logs; only the page it writes changes.
        super().handle_error(req, ErrorPageAsJson(client, exc), addr, exc)


class JsonErrorsWorker(JsonErrors, SyncWorker):
    pass


class JsonErrorsThreadWorker(JsonErrors, ThreadWorker):
    def handle_exit(self, sig, frame) -> None:
        # SIGTERM: the open event streams, which never end by themselves, end now (their
        # clients connect again with Last-Event-ID), rather than hold the stop for
        # graceful_timeout. From a thread: a signal handler must not wait for their lock.
        super().handle_exit(sig, frame)
        hub = getattr(self.wsgi, "extensions", {}).get(EVENT_HUB)
        if hub is not None:
            threading.Thread(target=hub.stop).start()


class ErrorPageAsJson:
    """The client's socket, as gunicorn's error handler writes its page to it (sendall, after
    making it non-blocking): the page goes out as JSON, with the same status."""

    def __init__(self, client, error: Exception) -> None:
        self.client, self.error = client, error

    def __getattr__(self, name: str):
        return getattr(self.client, name)

    def sendall(self, page: bytes) -> None:
        _version, code, reason = page.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        status = int(code)
        if status in MESSAGES:
            # gunicorn's own word on what is wrong: a client's mistake, named.
            message = f"{MESSAGES[status]}: {self.error}."
        else:  # 500: the application failed outside Flask's handlers
            message = "Something went wrong on our side; it is logged. Please report it."
        body = json.dumps({"code": status, "status": reason, "message": message}).encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            "Content-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.client.sendall(head.encode("latin-1") + body)
