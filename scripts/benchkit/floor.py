"""The floor: the cheapest UDP "DNS server" CPython can run, as a yardstick beside skyserve.

One blocking ``recvfrom`` and one ``sendto`` per query and nothing else: the reply is the
query itself with QR and AA set (its question echoed, no records). Whatever a one-process
CPython server does per datagram costs at least this, so a target that this loop misses
(a QPS ratio to knot above the floor's own, a CPU-per-query ratio below it) cannot be met by
any such server, only by batching system calls or more processes. The shapes suite runs it
in the same alternating rounds as skyserve and knot, on the same interpreter.

Run as a script: ``python floor.py PORT`` (127.0.0.1; stops on SIGTERM).
"""

from __future__ import annotations

import socket
import sys

FLAGS = b"\x84\x00"  # QR, AA, NOERROR


def serve(port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    recvfrom, sendto = sock.recvfrom, sock.sendto
    while True:
        data, peer = recvfrom(65535)
        if len(data) >= 12:
            sendto(data[:2] + FLAGS + data[4:], peer)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
