"""A total deadline for one HTTP attempt, enforced on every socket operation.

httpx's timeouts bound each single read, so a server that sends one byte a second (in its
headers or its body) never trips them. Here the network backend under httpcore clamps the
timeout of every connect, TLS handshake, read and write to what is left of the calling thread's
deadline: once it has passed, the next operation times out at once. Requests are synchronous,
so the thread that set the deadline is the one doing the reads, and pooled connections take the
deadline of whichever request uses them now.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx

from genarun.net.addresses import allowed_addresses, check_proxied

_local = threading.local()


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Within the block, socket operations of this thread end `seconds` from now at the latest."""
    previous = getattr(_local, "deadline", None)
    at = time.monotonic() + seconds
    _local.deadline = at if previous is None else min(previous, at)
    try:
        yield _local.deadline
    finally:
        _local.deadline = previous


def _clamp(timeout: float | None, write: bool = False) -> float | None:
    at: float | None = getattr(_local, "deadline", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        if write:
            raise httpcore.WriteTimeout("the request's total deadline has passed")
        raise httpcore.ReadTimeout("the request's total deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _clamp(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _clamp(timeout, write=True))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._stream.start_tls(ssl_context, server_hostname, _clamp(timeout))
        return _DeadlineStream(stream)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """Connects only to addresses the network rule allows (genarun.net.addresses), to the very
    address it checked; `checked=False` for a proxy, which the person running named."""

    def __init__(self, *, checked: bool = True) -> None:
        self._backend = httpcore.SyncBackend()
        self._checked = checked

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            clamped = _clamp(timeout)
        except httpcore.ReadTimeout as exc:
            raise httpcore.ConnectTimeout(str(exc)) from None
        if not self._checked:
            stream = self._backend.connect_tcp(host, port, clamped, local_address, socket_options)
            return _DeadlineStream(stream)
        failure: httpcore.ConnectError | None = None
        for address in allowed_addresses(host, port):
            try:
                stream = self._backend.connect_tcp(
                    address, port, clamped, local_address, socket_options
                )
            except httpcore.ConnectError as exc:  # the next address, as create_connection does
                failure = exc
                continue
            return _DeadlineStream(stream)
        assert failure is not None
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_unix_socket(path, _clamp(timeout), socket_options)
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _KeepHandedConnections:
    """httpcore's pool (1.0.x) hands an idle connection to a waiting request and leaves it idle
    until that request's thread starts using it; meanwhile another thread's pass over the pool
    may close it (as surplus keep-alive, expired, or to make room), and if the request's thread
    has begun by then the socket is closed under it: `[Errno 9] Bad file descriptor`, a retry
    (encode/httpcore#1110). Here each pass leaves the connections already handed out alone."""

    _connections: list[Any]
    _requests: list[Any]
    _max_connections: int
    _max_keepalive_connections: int

    def _assign_requests_to_connections(self) -> list[Any]:
        handed = {id(r.connection) for r in self._requests if r.connection is not None}
        kept = [c for c in self._connections if id(c) in handed]
        if not kept:
            return super()._assign_requests_to_connections()  # type: ignore[misc]
        # Out of sight of the pass, and counted against its limits as it would count them.
        self._connections = [c for c in self._connections if id(c) not in handed]
        self._max_connections -= len(kept)
        self._max_keepalive_connections -= len(kept)
        try:
            return super()._assign_requests_to_connections()  # type: ignore[misc]
        finally:
            self._connections.extend(kept)
            self._max_connections += len(kept)
            self._max_keepalive_connections += len(kept)


class _ConnectionPool(_KeepHandedConnections, httpcore.ConnectionPool):
    pass


class _ProxyPool(_KeepHandedConnections, httpcore.HTTPProxy):
    pass


class _PoolTransport(httpx.HTTPTransport):
    """httpx's own transport (its request mapping and error translation) over a given pool."""

    def __init__(
        self, pool: httpcore.ConnectionPool | httpcore.HTTPProxy, ssl_context: ssl.SSLContext
    ) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        self._pool.close()  # the default pool it made holds nothing yet; ours replaces it
        self._pool = pool


class DeadlineTransport(httpx.BaseTransport):
    """Connections whose every socket operation honours the thread's deadline: direct, or
    through the proxy the environment names for the request's URL (HTTP(S)_PROXY, NO_PROXY)."""

    def __init__(self, *, max_connections: int = 100) -> None:
        self._ssl_context = httpx.create_ssl_context()
        self._limits: dict[str, Any] = {
            "max_connections": max_connections,
            # Every connection it may open is kept for the next request: httpcore 1.0.x counts
            # all connections (not the idle ones) against this limit, so a lower one closed
            # every idle connection on each pass, and a busy pool opened a connection for
            # nearly every request (1,546 for 1,920 requests at 32 at once).
            "max_keepalive_connections": max_connections,
            "keepalive_expiry": 5.0,
        }
        self._backend = _DeadlineBackend()
        self._proxy_backend = _DeadlineBackend(checked=False)
        self._direct = _PoolTransport(
            _ConnectionPool(
                ssl_context=self._ssl_context, network_backend=self._backend, **self._limits
            ),
            self._ssl_context,
        )
        self._proxied: dict[str, _PoolTransport] = {}
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._transport_for(request.url)
        if transport is not self._direct:  # the proxy connects: check where it would go
            check_proxied(request.url.host, request.url.port or 443)
        return transport.handle_request(request)

    def _transport_for(self, url: httpx.URL) -> _PoolTransport:
        proxy = _proxy_for(url)
        if proxy is None:
            return self._direct
        with self._lock:
            transport = self._proxied.get(proxy)
            if transport is None:
                parsed = httpx.URL(proxy)
                auth = (parsed.username, parsed.password) if parsed.username else None
                transport = _PoolTransport(
                    _ProxyPool(
                        proxy_url=httpcore.URL(
                            scheme=parsed.raw_scheme,
                            host=parsed.raw_host,
                            port=parsed.port,
                            target=parsed.raw_path,
                        ),
                        proxy_auth=auth,
                        ssl_context=self._ssl_context,
                        network_backend=self._proxy_backend,
                        **self._limits,
                    ),
                    self._ssl_context,
                )
                self._proxied[proxy] = transport
            return transport

    def close(self) -> None:
        self._direct.close()
        with self._lock:
            for transport in self._proxied.values():
                transport.close()


def _proxy_for(url: httpx.URL) -> str | None:
    scheme = url.scheme
    if scheme not in ("http", "https"):
        return None
    proxies = urllib.request.getproxies()
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy or not proxy.startswith(("http://", "https://")):
        return None  # socks and other schemes: connect directly rather than fail
    if urllib.request.proxy_bypass(url.host):
        return None
    return proxy
