"""The session-wide guard of tests/conftest.py: no test reaches beyond this machine, even on one with internet."""

from __future__ import annotations

import socket

import httpx
import pytest


def test_a_public_address_or_name_is_refused_and_loopback_is_not() -> None:
    with pytest.raises(ConnectionRefusedError, match="must not reach the network"):
        socket.create_connection(("93.184.216.34", 443), timeout=5)
    with pytest.raises(socket.gaierror, match="must not reach the network"):
        socket.getaddrinfo("www.thehindu.com", 443)
    with pytest.raises(httpx.ConnectError):  # what a client sees: a connection error, at once
        httpx.get("https://www.thehindu.com/", timeout=5)
    assert socket.getaddrinfo("localhost", 80)  # the fake servers' addresses still resolve
