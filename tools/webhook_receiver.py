"""A webhook receiver on 127.0.0.1 for tests and benchmarks: it keeps every request it gets
(its headers, body and arrival time) and answers as told."""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)


# How the receiver answers a request: it writes the answer itself on the handler.
Answer = Callable[[BaseHTTPRequestHandler], None]


def no_content(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(204)
    handler.end_headers()


class Receiver:
    def __init__(self, answer: Answer = no_content) -> None:
        self.received: list[Received] = []
        self.answer = answer
        self.arrived = threading.Condition()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """The first `count` requests, once they have arrived (AssertionError if not in
        time)."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(f"{len(self.received)} of {count} requests in {timeout} s")
            return self.received[:count]


@contextmanager
def webhook_receiver(answer: Answer = no_content) -> Iterator[tuple[Receiver, str]]:
    """A receiver serving on a free port of 127.0.0.1, and its URL."""
    receiver = Receiver(answer)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with receiver.arrived:
                receiver.received.append(Received(self.path, dict(self.headers), body))
                receiver.arrived.notify_all()
            receiver.answer(self)

        def log_message(self, *_args) -> None:
            pass  # the tests read what arrived, not a log of it

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
