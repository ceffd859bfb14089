"""Which network addresses genarun's HTTP client may connect to.

A URL in a tree, or one a template or a fetched answer builds, must not reach the cloud's
metadata service (169.254.169.254 and its kin hand out the machine's credentials): link-local
addresses and the known metadata addresses are refused by default. `GENARUN_NETWORK`, set by
the person running genarun (never by a tree), chooses the rule:

- `default` (or unset): everything but link-local and metadata addresses;
- `public`: public addresses only (no loopback, private, shared or reserved ranges): for
  running trees from elsewhere;
- `any`: no check.

The check runs on the addresses a name resolves to, at connect time (redirects included, as
each hop connects anew), and genarun connects to the address it checked, so a name cannot
resolve to one address for the check and another for the connection.
"""

from __future__ import annotations

import ipaddress
import os
import socket

import httpcore

RULES = ("default", "public", "any")
# Metadata services outside the link-local ranges (AWS's IPv6 one, Alibaba's).
_METADATA = frozenset(ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200"))

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(httpcore.ConnectError):
    """A connection refused by the address rule (never retried: it would be refused again)."""


def network_rule() -> str:
    rule = os.environ.get("GENARUN_NETWORK", "").strip().lower() or "default"
    if rule not in RULES:
        raise AddressRefused(
            f"GENARUN_NETWORK={rule!r} is not a rule: use one of {', '.join(RULES)}"
        )
    return rule


def refusal(address: Address, rule: str) -> str | None:
    """Why `rule` refuses `address`, or None if it may be reached."""
    if rule == "any":
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:169.254.169.254 is 169.254.169.254
    if address in _METADATA or address.is_link_local:
        return "a link-local or cloud metadata address"
    if rule == "public" and (not address.is_global or address.is_multicast):
        return "not a public address (GENARUN_NETWORK=public)"
    return None


def allowed_addresses(host: str, port: int) -> list[str]:
    """The addresses of `host` that the rule allows, in the resolver's order; AddressRefused
    naming the host and why when there are none."""
    rule = network_rule()
    if rule == "any":
        return [host]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror}") from None
    allowed: list[str] = []
    reasons: list[str] = []
    for info in infos:
        text = str(info[4][0]).split("%")[0]  # without an IPv6 scope id
        why = refusal(ipaddress.ip_address(text), rule)
        if why is None:
            if text not in allowed:
                allowed.append(text)
        else:
            reasons.append(f"{text} is {why}")
    if not allowed:
        raise AddressRefused(
            f"refused to connect to {host}: {'; '.join(dict.fromkeys(reasons))}; the person "
            "running genarun can allow it with GENARUN_NETWORK=any"
        )
    return allowed


def check_proxied(host: str, port: int) -> None:
    """For a request that a proxy connects: refuse it when `host` resolves here to refused
    addresses only. A name that does not resolve here is the proxy's to resolve (behind many
    proxies only the proxy can)."""
    try:
        allowed_addresses(host, port)
    except AddressRefused:
        raise
    except httpcore.ConnectError:
        return
