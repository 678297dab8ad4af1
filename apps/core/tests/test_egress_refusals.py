"""Each refused address class is named (apps.core.egress.guard._address_refusal): the table
of classes keeps the order the guard clauses had."""

from __future__ import annotations

import ipaddress

import pytest

from apps.core.egress.guard import _address_refusal


@pytest.mark.parametrize(
    ("address", "loopback", "why"),
    [
        ("169.254.169.254", True, "a cloud metadata address"),
        ("127.0.0.1", False, "a loopback address"),
        ("127.0.0.1", True, None),
        ("::1", False, "a loopback address"),
        ("169.254.10.10", False, "a link-local address"),
        ("fe80::1", False, "a link-local address"),
        ("224.0.0.1", False, "a multicast address"),
        ("0.0.0.0", False, "an unspecified address"),
        ("10.0.0.1", False, "a private address"),
        ("fc00::1", False, "a private address"),
        ("::ffff:10.0.0.1", False, "a private address"),
        ("240.0.0.1", False, "a private address"),  # reserved, and private to the stdlib
        ("100.64.0.1", False, "a non-public address"),  # shared address space
        ("93.184.216.34", False, None),
        ("2606:4700::1111", False, None),
    ],
)
def test_the_refusal_names_the_first_class_that_applies(
    address: str, loopback: bool, why: str | None
) -> None:
    assert _address_refusal(ipaddress.ip_address(address), allow_loopback=loopback) == why
