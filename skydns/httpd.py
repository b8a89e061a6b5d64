"""A minimal HTTP/1.1 server for probes and metrics: GET and HEAD, one request a connection.

Routes map a path to a function returning (status, content type, body). It exists so the
probes need no web framework and answer even while etcd or upstreams are failing.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Response = tuple[int, str, bytes]
Route = Callable[[], "Response | Awaitable[Response]"]

REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
READ_TIMEOUT = 5.0


class HttpServer:
    def __init__(self, sock: socket.socket, routes: dict[str, Route]) -> None:
        self.sock = sock
        self.routes = routes
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, sock=self.sock)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            method, _, rest = head.decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            status, ctype, body = await self._route(method, path)
            writer.write(
                (
                    f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\n"
                    f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n"
                ).encode()
                + (body if method != "HEAD" else b"")
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError):
            pass
        finally:
            writer.close()

    async def _route(self, method: str, path: str) -> Response:
        route = self.routes.get(path)
        if route is None:
            return 404, "text/plain", b"not found\n"
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        try:
            result = route()
            return await result if inspect.isawaitable(result) else result
        except Exception:
            log.exception("HTTP handler for %s failed", path)
            return 503, "text/plain", b"internal error\n"


async def http_ok(host: str, port: int, path: str) -> bool:
    """GET a path; True for a 200 answer (the self-check of /health)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        status = await reader.readline()
    finally:
        writer.close()
    return status.split(b" ", 2)[1:2] == [b"200"]
