"""Attempts to deliver webhooks: POSTs to a subscriber's URL that cannot be turned against
the API's own network, and cannot hold a worker for long.

- The URL's host is resolved when a turn of deliveries to it begins, and every address it
  resolves to is checked (webhooks/addresses.py); the connections go to the addresses
  checked, not to the name again, so a name that resolves elsewhere a moment later (DNS
  rebinding) gains nothing. TLS still verifies the certificate against the name (SNI).
- Redirects are not followed: a 3xx is the receiver's answer, and a failure.
- No proxy from the environment: a proxy would resolve the name itself.
- An attempt ends `timeout` seconds after it began, whatever the receiver does: each wait
  (connecting, sending, the answer's next bytes) is bounded by it, and a receiver that
  answers a byte at a time has its connection shut when the time is up (a connection per
  attempt: none kept, so each is watched from its start). Of the answer's body,
  ANSWER_LIMIT bytes at most are read, and kept for the endpoint's owner to see.
"""

import socket
import ssl
import threading
import time
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from ipaddress import ip_address
from types import TracebackType

import certifi
import httpx

from webhooks.addresses import Address, Network, refusal

TIMEOUT_SECONDS = 5.0
ANSWER_LIMIT = 4096


@dataclass(frozen=True)
class Attempt:
    """What one delivery attempt came to."""

    # The receiver's HTTP status; None when there was no answer.
    status: int | None
    # When it began, and how long it took.
    at: datetime
    seconds: float
    # Why it failed, in words for the endpoint's owner; None when delivered.
    error: str | None = None
    # The start of the answer's body, as the receiver sent it.
    answer: bytes = b""

    @property
    def delivered(self) -> bool:
        return self.error is None


class RefusedError(Exception):
    """A URL this API will not send to: what it resolves to, and why."""


class Sender:
    """Deliveries to one URL, for a turn: its name resolved and checked once, a connection
    per attempt."""

    def __init__(
        self, url: str, allowed: Iterable[Network] = (), timeout: float = TIMEOUT_SECONDS
    ) -> None:
        self.timeout = timeout
        self.client = httpx.Client(
            trust_env=False, timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0),
            verify=certificate_checks(),
        )  # fmt: skip
        try:
            self.target = httpx.URL(url)
            if self.target.scheme not in ("http", "https") or not self.target.host:
                raise RefusedError(f"{url!r} is not an http:// or https:// URL")
            if self.target.port is not None and not 1 <= self.target.port <= 65535:
                raise RefusedError(f"{self.target.port} is no TCP port")
            self.addresses = checked_addresses(self.target.host, self.target.port, list(allowed))
            self.refused = None
        except (RefusedError, httpx.InvalidURL) as refused:
            self.addresses, self.refused = [], refused

    def __enter__(self) -> "Sender":
        return self

    def __exit__(self, *_exception: type[BaseException] | BaseException | TracebackType) -> None:
        self.client.close()

    def send(self, body: bytes, headers: dict[str, str]) -> Attempt:
        """POST `body` with `headers`, to each address in turn, as a connection to a name
        tries them: one that refuses the connection (an IPv6 address of a receiver on IPv4
        alone) gives the next."""
        started, began = time.monotonic(), datetime.now(UTC)

        def ended(status: int | None, error: str | None, answer: bytes = b"") -> Attempt:
            return Attempt(status, began, time.monotonic() - started, error, answer)

        if self.refused is not None:
            return ended(None, f"Not sent: {self.refused}.")
        *others, last = self.addresses
        try:
            for address in others:
                try:
                    return self.answered(address, body, headers, ended, started)
                except httpx.ConnectError:
                    continue
            return self.answered(last, body, headers, ended, started)
        except httpx.TimeoutException:
            return ended(None, f"No answer within {self.timeout:g} s.")
        except (httpx.HTTPError, OSError) as failed:
            return ended(None, f"Not delivered: {failed or type(failed).__name__}.")

    def answered(self, address: Address, body: bytes, headers: dict, ended, started) -> Attempt:
        """The attempt at `address`, once the receiver answered: delivered on a 2xx."""
        deadline = started + self.timeout
        watchdogs: list[threading.Timer] = []

        def watched(event: str, info: dict) -> None:
            # The connection's socket, shut when the attempt's time is up: a read blocked on
            # a receiver that dribbles its answer returns at once.
            if event == "connection.connect_tcp.complete":
                connection = info["return_value"].get_extra_info("socket")
                watchdog = threading.Timer(
                    max(0.0, deadline - time.monotonic()), shut, [connection]
                )
                watchdog.start()
                watchdogs.append(watchdog)

        try:
            with self.client.stream(
                "POST",
                self.target.copy_with(host=str(address)),
                content=body,
                # The name, as the URL gave it: the receiver's virtual host, its certificate's.
                headers={**headers, "Host": self.target.netloc.decode("ascii")},
                extensions={"sni_hostname": self.target.host, "trace": watched},
            ) as response:
                answer = read_until(response, ANSWER_LIMIT, deadline)
        except (httpx.HTTPError, OSError):
            if time.monotonic() >= deadline:
                raise httpx.TimeoutException("the attempt's time is up") from None
            raise
        finally:
            for watchdog in watchdogs:
                watchdog.cancel()
        if not response.is_success:
            status = response.status_code
            return ended(status, f"The receiver answered {status}.", answer)
        return ended(response.status_code, None, answer)


@cache
def certificate_checks() -> ssl.SSLContext:
    """The TLS settings of every delivery, made once: what httpx makes for each client by
    default (certifi's authorities), which took 25 ms, for each turn of each endpoint."""
    return ssl.create_default_context(cafile=certifi.where())


def shut(connection: socket.socket) -> None:
    with suppress(OSError):  # closed already: the attempt ended
        connection.shutdown(socket.SHUT_RDWR)


def send(
    url: str,
    body: bytes,
    headers: dict[str, str],
    allowed: Iterable[Network] = (),
    timeout: float = TIMEOUT_SECONDS,
) -> Attempt:
    """One POST of `body` with `headers` to `url`, unless it resolves to an address that is
    not public and not in `allowed`."""
    with Sender(url, allowed, timeout) as sender:
        return sender.send(body, headers)


def checked_addresses(host: str, port: int | None, allowed: list[Network]) -> list[Address]:
    """The addresses `host` resolves to, once every one of them has been checked (a name with
    one private address among public ones is refused)."""
    try:
        found = socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as unresolved:
        raise RefusedError(f"{host} does not resolve ({unresolved.strerror})") from None
    addresses = list(dict.fromkeys(ip_address(info[4][0]) for info in found))
    for address in addresses:
        why = refusal(address, allowed)
        if why is not None:
            raise RefusedError(f"{host} resolves to {address}, {why} (WEBHOOK_ALLOWED_NETWORKS)")
    return addresses


def read_until(response: httpx.Response, limit: int, deadline: float) -> bytes:
    """At most `limit` bytes of the answer's body, read until `deadline`."""
    answer = b""
    for chunk in response.iter_raw():
        answer += chunk
        if len(answer) >= limit or time.monotonic() > deadline:
            break
    return answer[:limit]
