"""One attempt to deliver a webhook: a POST to the subscriber's URL that cannot be turned
against the API's own network, and cannot hold a worker for long.

- The URL's host is resolved here, at delivery time, and every address it resolves to is
  checked (webhooks/addresses.py); the connection goes to the address checked, not to the
  name again, so a name that resolves elsewhere a moment later (DNS rebinding) gains nothing.
  TLS still verifies the certificate against the name (SNI).
- Redirects are not followed: a 3xx is the receiver's answer, and a failure.
- No proxy from the environment: a proxy would resolve the name itself.
- Each wait (connecting, sending, the answer's next bytes) ends after `timeout` seconds, and
  the attempt stops reading once `timeout` has passed since it began: at most twice that
  for a receiver that answers a byte at a time. Of the answer's body, ANSWER_LIMIT bytes at
  most are read, and kept for the endpoint's owner to see.
"""

import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import ip_address

import httpx

from webhooks.addresses import Address, Network, refusal

TIMEOUT_SECONDS = 5.0
ANSWER_LIMIT = 4096


@dataclass(frozen=True)
class Attempt:
    """What one delivery attempt came to."""

    # The receiver's HTTP status; None when there was no answer.
    status: int | None
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


def send(
    url: str,
    body: bytes,
    headers: dict[str, str],
    allowed: Iterable[Network] = (),
    timeout: float = TIMEOUT_SECONDS,
) -> Attempt:
    """POST `body` with `headers` to `url`, unless it resolves to an address that is not
    public and not in `allowed`."""
    started = time.monotonic()

    def ended(status: int | None, error: str | None, answer: bytes = b"") -> Attempt:
        return Attempt(status, time.monotonic() - started, error, answer)

    try:
        target = httpx.URL(url)
        if target.scheme not in ("http", "https") or not target.host:
            raise RefusedError(f"{url!r} is not an http:// or https:// URL")
        *others, last = checked_addresses(target.host, target.port, list(allowed))
        with httpx.Client(trust_env=False, timeout=timeout) as client:
            # Each address in turn, as a connection to a name tries them: one that refuses
            # the connection (an IPv6 address of a receiver on IPv4 alone) gives the next.
            for address in others:
                try:
                    return answered(
                        post(client, target, address, body, headers), ended, started + timeout
                    )
                except httpx.ConnectError:
                    continue
            return answered(post(client, target, last, body, headers), ended, started + timeout)
    except RefusedError as refused:
        return ended(None, f"Not sent: {refused}.")
    except httpx.TimeoutException:
        return ended(None, f"No answer within {timeout:g} s.")
    except (httpx.HTTPError, OSError) as failed:
        return ended(None, f"Not delivered: {failed or type(failed).__name__}.")


def post(client: httpx.Client, target: httpx.URL, address: Address, body: bytes, headers: dict):
    """The POST to `target`, connected to `address`: its answer's context, to stream it."""
    return client.stream(
        "POST",
        target.copy_with(host=str(address)),
        content=body,
        # The name, as the URL gave it: the receiver's virtual host, and its certificate's.
        headers={**headers, "Host": target.netloc.decode("ascii")},
        extensions={"sni_hostname": target.host},
    )


def answered(streamed, ended: Callable[..., Attempt], deadline: float) -> Attempt:
    """The attempt, once the receiver answered: delivered on a 2xx."""
    with streamed as response:
        answer = read_until(response, ANSWER_LIMIT, deadline)
    if not response.is_success:
        return ended(response.status_code, f"The receiver answered {response.status_code}.", answer)
    return ended(response.status_code, None, answer)


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
