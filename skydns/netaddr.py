"""Socket addresses: parsing ``HOST:PORT`` option values and binding listeners.

Shared by both programs' DNS, probe and metrics listeners, so that an address is read the
same way everywhere.
"""

from __future__ import annotations

import socket

RCVBUF = 4 * 1024 * 1024


def split_hostport(addr: str, default_port: int) -> tuple[str, int]:
    """``'1.2.3.4:53'``, ``'[::1]:53'``, ``':53'`` (all addresses) -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep:
        host, port = addr, str(default_port)
    host = host.strip("[]")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad port in {addr!r}")
    return host or "0.0.0.0", int(port)


def is_local_address(host: str) -> bool:
    """Whether an address belongs to this machine: only then can we bind to it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
    except OSError:
        return False
    return True


class ListenError(OSError):
    """A listener could not be bound; the message names the listener and its address."""


def bind(addr: str, kind: socket.SocketKind, reuse_port: bool = False, *,
         what: str) -> socket.socket:
    """A socket bound to ``addr``; ``what`` names the listener in the error, because a bare
    "Address already in use" does not say which of a program's ports is taken."""
    host, port = split_hostport(addr, 53)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if kind == socket.SOCK_DGRAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        proto = "UDP" if kind == socket.SOCK_DGRAM else "TCP"
        shown = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        raise ListenError(f"cannot listen for {what} on {proto} {shown}: "
                          f"{exc.strerror or exc}") from exc
    return sock
