"""Where a webhook may be delivered: to the public internet only (OWASP API7, server-side
request forgery). A subscriber names the URL, so without this check any user could make the
API's own network answer them: the database, the metrics, a cloud's metadata service and the
credentials it hands out.

The decision is made on the address the delivery connects to, resolved at delivery time
(webhooks/sending.py), never on the URL's text: a name can resolve to anything, and resolve
to something else tomorrow.
"""

import socket
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

# Metadata services of the clouds: link-local or shared addresses, refused with the rest;
# named so that the refusal says what was at stake.
CLOUD_METADATA = {
    ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, DigitalOcean
    ip_address("169.254.170.2"),  # AWS ECS task credentials
    ip_address("fd00:ec2::254"),  # AWS over IPv6
    ip_address("100.100.100.200"),  # Alibaba Cloud
}
# IPv6 addresses that carry an IPv4 address in their last 32 bits, which a gateway or the
# host delivers to: NAT64's well-known and local-use prefixes, IPv4-compatible (deprecated)
# and IPv4-translated addresses.
CARRYING_IPV4 = [
    ip_network(prefix) for prefix in ("64:ff9b::/96", "64:ff9b:1::/48", "::/96", "::ffff:0:0:0/96")
]


def refusal(address: Address, allowed: Iterable[Network] = ()) -> str | None:
    """Why a delivery must not connect to `address` ("a loopback address"), or None when it
    may: a public (globally routable) address, or one of the `allowed` networks."""
    if any(address in network for network in allowed):
        return None
    for embedded in embedded_ipv4(address):
        why = refusal(embedded, allowed)
        if why is not None:
            return f"{why} ({embedded}, inside it)"
    if address in CLOUD_METADATA:
        return "a cloud metadata service"
    for property_, kind in (
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
    ):
        if getattr(address, property_):
            return f"a {kind} address"
    if not address.is_global:
        return "not a public address"
    return None


def embedded_ipv4(address: Address) -> list[IPv4Address]:
    """The IPv4 addresses an IPv6 one leads to: mapped (::ffff:a.b.c.d, which the host's own
    stack delivers to a.b.c.d), NAT64, compatible, translated, 6to4 and Teredo."""
    if isinstance(address, IPv4Address) or address.is_loopback or address.is_unspecified:
        return []  # (::1 and :: are IPv4-compatible in form only)
    found = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if any(address in prefix for prefix in CARRYING_IPV4):
        found.append(IPv4Address(int(address) & 0xFFFFFFFF))
    return [each for each in found if each is not None]


def literal_address(host: str) -> Address | None:
    """The address a URL's host names without a name lookup, in any form the resolver takes
    as one (2130706433, 0x7f000001, 127.1, full-width dots), or None for a name."""
    try:
        host = host.encode("idna").decode("ascii")
        found = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)
    except (UnicodeError, socket.gaierror):
        return None
    return ip_address(found[0][4][0])
