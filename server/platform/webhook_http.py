"""Outbound HTTP to customers' webhook URLs, behind the SSRF guard.

A customer chooses the URL, so every request is one an attacker could aim: at the cloud
metadata service (169.254.169.254), at a database on our private network, at loopback.
The guard resolves the host and refuses the URL unless every address it resolves to is a
public unicast address; it runs when an endpoint is saved (`check_url`) and again on
every new connection (`GuardedResolver`, the connector's resolver): the connection is
made to the very addresses that were checked, so a DNS answer that changes between the
check and the connect (DNS rebinding) reaches nothing private. `allow_private`
(YWM_WEBHOOK_ALLOW_PRIVATE, refused in production) turns the address rule off for
development and tests.

One pooled aiohttp session per event loop (as server/carriers/http.py), with no total
connection limit: the per-endpoint concurrency cap of the sender bounds connections, and a
shared limit would let one slow endpoint's held connections starve the others. Requests
follow no redirects, are bounded by one total timeout, and read at most
`MAX_RESPONSE_BYTES` of the answer.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

MAX_RESPONSE_BYTES = 4096  # enough for an error message; the rest is never read
KEEPALIVE_SECONDS = 20.0   # under the usual 60-75 s server keep-alive
CONNECT_TIMEOUT = 5.0      # within the total timeout; a dead host fails sooner

_sessions: dict[tuple[asyncio.AbstractEventLoop, bool], aiohttp.ClientSession] = {}


class UnsafeUrl(Exception):
    """The URL may not be called: a sentence for the API (422 on `url`) or the log."""


@dataclass(frozen=True)
class Answer:
    status: int
    latency_ms: int
    body: bytes  # at most MAX_RESPONSE_BYTES


class NoAnswer(Exception):
    """No HTTP answer: timeout, refused connection, DNS failure or a refused address."""

    def __init__(self, detail: str, latency_ms: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.latency_ms = latency_ms


def address_allowed(address: str) -> bool:
    """True for a public unicast address: not loopback, private, link-local (the metadata
    service included), shared (CGNAT), multicast, unspecified or reserved."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback
                                 or ip.is_link_local or ip.is_private or ip.is_unspecified)


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


async def resolve(host: str, port: int, allow_private: bool) -> list[tuple[int, str]]:
    """(family, address) for `host`; raises UnsafeUrl when it does not resolve or any
    address is refused (one bad address refuses all: a round-robin could pick it)."""
    literal = _literal(host)
    if literal is not None:
        found = [(socket.AF_INET6 if ":" in literal else socket.AF_INET, literal)]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise UnsafeUrl(f"The host {host!r} does not resolve.") from None
        found = list(dict.fromkeys((info[0], str(info[4][0])) for info in infos))
    if not found:
        raise UnsafeUrl(f"The host {host!r} does not resolve.")
    if not allow_private:
        for _, address in found:
            if not address_allowed(address):
                raise UnsafeUrl("The URL resolves to a private, loopback, link-local or "
                                "reserved address; webhooks go to public addresses only.")
    return found


async def check_url(url: str, allow_private: bool, require_https: bool) -> None:
    """Refuse a URL that cannot be a webhook target (UnsafeUrl says why)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("Must be an absolute http:// or https:// URL.")
    if require_https and parts.scheme != "https":
        raise UnsafeUrl("Must be an https:// URL.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("Must not carry a user name or password.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeUrl("The port is not valid.") from None
    await resolve(parts.hostname, port, allow_private)


class GuardedResolver(AbstractResolver):
    """The connector's resolver: resolves, checks, and hands over only checked addresses."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        try:
            found = await resolve(host, port, self.allow_private)
        except UnsafeUrl as exc:
            raise OSError(str(exc)) from None
        return [{"hostname": host, "host": address, "port": port, "family": fam,
                 "proto": 0, "flags": socket.AI_NUMERICHOST} for fam, address in found]

    async def close(self) -> None:
        pass


def session(allow_private: bool) -> aiohttp.ClientSession:
    """This event loop's webhook session, opened on first use."""
    key = (asyncio.get_running_loop(), allow_private)
    found = _sessions.get(key)
    if found is None or found.closed:
        connector = aiohttp.TCPConnector(limit=0, use_dns_cache=False,
                                         keepalive_timeout=KEEPALIVE_SECONDS,
                                         resolver=GuardedResolver(allow_private))
        found = _sessions[key] = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent",))
    return found


async def close() -> None:
    """Close this event loop's sessions (at shutdown)."""
    loop = asyncio.get_running_loop()
    for key in [k for k in _sessions if k[0] is loop]:
        await _sessions.pop(key).close()


async def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float,
               allow_private: bool) -> Answer:
    """POST `body` to `url`; the answer (any status), or NoAnswer."""
    started = time.perf_counter()

    def elapsed() -> int:
        return int((time.perf_counter() - started) * 1000)
    host = urlsplit(url).hostname or ""
    literal = _literal(host)
    if literal is not None and not allow_private and not address_allowed(literal):
        # aiohttp connects to an IP literal without asking the resolver.
        raise NoAnswer("refused: the URL names a private or reserved address", elapsed())
    limits = aiohttp.ClientTimeout(total=timeout, sock_connect=min(CONNECT_TIMEOUT, timeout))
    try:
        async with session(allow_private).post(url, data=body, headers=headers,
                                               timeout=limits, allow_redirects=False) as answer:
            excerpt = await answer.content.read(MAX_RESPONSE_BYTES)
            return Answer(answer.status, elapsed(), excerpt)
    except asyncio.TimeoutError:
        raise NoAnswer(f"timeout after {timeout:g} s", elapsed()) from None
    except aiohttp.ClientConnectorError as exc:
        raise NoAnswer(f"connection failed: {exc.os_error.strerror or exc.os_error}",
                       elapsed()) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise NoAnswer(f"connection failed: {type(exc).__name__}", elapsed()) from None
