"""Where webhooks may go (OWASP API7): the guard's decision on addresses as data. No packet
is sent by these tests; the addresses below are never connected to."""

from ipaddress import ip_address, ip_network

import pytest

from config.settings import SettingsError, load_settings
from webhooks.addresses import refusal

REFUSED = {
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "::1": "loopback",
    "10.0.0.1": "private",
    "172.16.0.1": "private",
    "192.168.1.1": "private",
    "fc00::1": "private",
    "fe80::1": "link-local",
    "169.254.1.1": "link-local",
    "169.254.169.254": "cloud metadata",
    "169.254.170.2": "cloud metadata",
    "fd00:ec2::254": "cloud metadata",
    "100.100.100.200": "cloud metadata",
    "100.64.0.1": "not a public address",  # carrier-grade NAT
    "0.0.0.0": "private",
    "::": "private",
    "224.0.0.1": "multicast",
    "ff02::1": "multicast",
    "255.255.255.255": "private",
    "192.0.2.1": "private",  # documentation
    "198.18.0.1": "private",  # benchmarking
    "240.0.0.1": "private",  # reserved
    "2001:db8::1": "private",
    # IPv6 forms of IPv4 addresses: the IPv4 address decides.
    "::ffff:127.0.0.1": "loopback",
    "::ffff:169.254.169.254": "cloud metadata",
    "64:ff9b::a9fe:a9fe": "cloud metadata",  # NAT64
    "2002:7f00:1::": "loopback",  # 6to4
    "2002:a00:1::": "private",
    "64:ff9b:1::a9fe:a9fe": "cloud metadata",  # NAT64, local use
    "::7f00:1": "loopback",  # IPv4-compatible
    "::ffff:0:7f00:1": "loopback",  # IPv4-translated
}
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "2606:4700:4700::1111",
    "2002:808:808::",
    "64:ff9b::808:808",
]


@pytest.mark.parametrize("address", REFUSED)
def test_an_address_that_is_not_public_is_refused_saying_what_it_is(address):
    why = refusal(ip_address(address))
    assert why is not None
    assert REFUSED[address] in why


@pytest.mark.parametrize("address", PUBLIC)
def test_a_public_address_may_be_delivered_to(address):
    assert refusal(ip_address(address)) is None


def test_the_allowed_networks_let_their_addresses_through_and_no_others():
    allowed = [ip_network("127.0.0.0/8"), ip_network("10.1.0.0/16")]
    assert refusal(ip_address("127.0.0.1"), allowed) is None
    assert refusal(ip_address("10.1.2.3"), allowed) is None
    assert "private" in refusal(ip_address("10.2.0.1"), allowed)
    assert "cloud metadata" in refusal(ip_address("169.254.169.254"), allowed)
    assert "loopback" in refusal(ip_address("::1"), allowed)


def test_the_allowed_networks_are_checked_at_start():
    settings = load_settings(webhook_allowed_networks="127.0.0.1, ::1,10.0.0.0/8")
    assert settings.webhook_allowed_network_list == [
        ip_network("127.0.0.1/32"),
        ip_network("::1/128"),
        ip_network("10.0.0.0/8"),
    ]
    with pytest.raises(SettingsError, match="WEBHOOK_ALLOWED_NETWORKS"):
        load_settings(webhook_allowed_networks="10.0.0.0/8,intranet")
