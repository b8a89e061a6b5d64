"""The UDP reading thread's batches (``transport.UdpServer._read``).

After its blocking receive the thread takes the datagrams already waiting, up to
``BATCH``, answers them under one acquisition of the loop's gate and sends the replies
back to back. A batch keeps the hot code and data warm from one query to the next
(between trips through the kernel they go cold: a query costs about twice on the wire
what it costs in-process), and replies sent together find the client still awake more
often (each datagram to a sleeping peer costs the sender its wake-up).

A look that finds nothing is a wasted system call, the common case at low rates; so
after such a look the thread looks again only every ``PROBE`` queries, until a look
finds some.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

BATCH = 32  # datagrams answered under one acquisition of the gate
PROBE = 16  # after a look found nothing, look again at every this many-th query

Query = tuple[bytes, Any, float]  # datagram, peer, when it was read (``perf_counter``)
Replies = list[tuple[bytes, Any]]


def gather(batch: list[Query], recvfrom: Callable[..., tuple[bytes, Any]],
           clock: Callable[[], float]) -> bool:
    """Add to ``batch`` the datagrams waiting now, up to ``BATCH`` in all; whether any
    were."""
    had = len(batch)
    for _ in range(BATCH - had):
        try:
            data, peer = recvfrom(65535, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            log.debug("udp receive failed", exc_info=True)
            break
        batch.append((data, peer, clock()))
    return len(batch) > had


def send_all(sendto: Callable[[bytes, Any], object], replies: Replies) -> None:
    """The replies, back to back, in the order their queries came; a failed send is
    logged, the others still go."""
    for reply, peer in replies:
        try:
            sendto(reply, peer)
        except OSError:
            log.debug("udp send to %s failed", peer, exc_info=True)
