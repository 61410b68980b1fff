"""Who the client is, and what a TLS-terminating proxy in front of the portal may say about it.

A proxy is trusted by its address (a list of CIDRs in settings). Only from such an address are its
headers believed: `X-Forwarded-Proto: https` (Django's SECURE_PROXY_SSL_HEADER) and the client's
address in `X-Forwarded-For`. From anyone else they are what the client claims, and ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from django.conf import settings
from django.http import HttpRequest

MAX_FORWARDED_HOPS = 32

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network


@lru_cache(maxsize=16)
def _parsed(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ip_network(cidr.strip(), strict=False) for cidr in cidrs if cidr.strip())


def networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs ("10.0.0.0/8", "::1", "127.0.0.1/32") as networks; settings validate them at start."""
    return _parsed(tuple(cidrs))


def address(value: str) -> Address | None:
    """An address as a client or proxy gives it ("[::1]", "::ffff:10.0.0.1" as 10.0.0.1), or None."""
    try:
        parsed = ip_address(value.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        return None
    if isinstance(parsed, IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


def within(candidate: Address, nets: Iterable[Network]) -> bool:
    return any(candidate in network for network in nets)


def forwarded_client(remote: Address, forwarded_for: str, proxies: tuple[Network, ...]) -> Address | None:
    """The rightmost X-Forwarded-For hop that is not itself a trusted proxy (None: unreadable).

    What the proxies saw, not what the client claims: a client may put anything at the left.
    """
    client = remote
    for hop in reversed(forwarded_for.split(",")[-MAX_FORWARDED_HOPS:]):
        hop_address = address(hop)
        if hop_address is None:
            return None
        client = hop_address
        if not within(hop_address, proxies):
            break
    return client


def from_trusted_proxy(request: HttpRequest) -> bool:
    remote = address(request.META.get("REMOTE_ADDR", ""))
    return remote is not None and within(remote, networks(settings.DJANGO_TRUSTED_PROXIES))


def client_ip(request: HttpRequest) -> str | None:
    """The client's address for login throttling (django-axes' AXES_CLIENT_IP_CALLABLE).

    REMOTE_ADDR, or behind a trusted proxy the client it names in X-Forwarded-For, so that the
    lockout by username and address sees the real address and not the proxy's.
    """
    remote = address(request.META.get("REMOTE_ADDR", ""))
    if remote is None:
        return request.META.get("REMOTE_ADDR") or None
    proxies = networks(settings.DJANGO_TRUSTED_PROXIES)
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if within(remote, proxies) and forwarded.strip():
        client = forwarded_client(remote, forwarded, proxies)
        if client is not None:
            return str(client)
    return str(remote)


class TrustedProxyHeaderMiddleware:
    """Drop the HTTPS header (SECURE_PROXY_SSL_HEADER) unless a trusted proxy sent the request.

    First in MIDDLEWARE, before anything asks `request.is_secure()`: otherwise any client could
    call itself HTTPS (CSRF's origin check, secure redirects and HSTS all believe it).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        header = (getattr(settings, "SECURE_PROXY_SSL_HEADER", None) or (None,))[0]
        if header and header in request.META and not from_trusted_proxy(request):
            del request.META[header]
        return self.get_response(request)
