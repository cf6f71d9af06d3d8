"""Which address a client has, behind a reverse proxy we trust.

A reverse proxy connects to Hearth itself, so every request's TCP peer is the
proxy. When that peer is one of `server.trusted_proxies`, the client's address
is the last hop of X-Forwarded-For: the address the proxy itself saw
(nginx's `$proxy_add_x_forwarded_for` appends it). Earlier hops were written
by whoever sent the request and prove nothing. From any other peer the header
is ignored, so nobody can choose the address a ban or a sign-in limit sees.

The address found is used only as a keyed hash (spaces/addresses.py, web/auth.py)
and is never logged.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from hearth.spaces.addresses import ClientAddress, utc_day

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(proxies: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(peer: str | None, trusted: tuple[Network, ...]) -> bool:
    address = _ip(peer)
    return address is not None and any(address in net for net in trusted)


def client_address(peer: str | None, forwarded_for: str | None,
                   trusted: tuple[Network, ...]) -> str | None:
    """The client's address: the TCP peer's, or — when the peer is a trusted proxy that
    sent X-Forwarded-For — that header's last hop (if it is an IP address)."""
    if not trusted or not forwarded_for or not is_trusted(peer, trusted):
        return peer
    last = _ip(forwarded_for.split(",")[-1])
    return str(last) if last is not None else peer


def is_loopback(host: str | None) -> bool:
    address = _ip(host)
    return address is not None and address.is_loopback


class AddressCap:
    """Open connections per client address, for a cap: counted by the address's keyed hash
    under today's salt (spaces/addresses.py), in memory, and only while connections are
    open. `admit` gives a key to hand back to `release`, or None: refuse."""

    def __init__(self, seed: bytes, cap: int, clock: Callable[[], float]) -> None:
        self.seed, self.cap, self.clock = seed, cap, clock
        self._open: dict[bytes, int] = {}

    def admit(self, address: str | None) -> bytes | None:
        if address is None or self.cap <= 0:
            return b""
        key = ClientAddress(self.seed, address).hash_for(utc_day(self.clock()))
        if self._open.get(key, 0) >= self.cap:
            return None
        self._open[key] = self._open.get(key, 0) + 1
        return key

    def release(self, key: bytes) -> None:
        if key and key in self._open:
            self._open[key] -= 1
            if self._open[key] <= 0:
                del self._open[key]

    def __len__(self) -> int:
        return len(self._open)

    def __repr__(self) -> str:
        return f"<AddressCap {len(self._open)} addresses>"
