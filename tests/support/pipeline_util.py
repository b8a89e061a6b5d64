"""For the in-process pipeline tests (pipeline/test_pipeline.py, wire/test_wire.py): every
query is handled twice, since the second reply normally comes from the answer cache and
must not differ."""

from __future__ import annotations

import dns.message

from skyserve.pipeline.chain import Pipeline

__all__ = ["handle_twice"]


def handle_twice(e: Pipeline, q: dns.message.Message, ids: tuple[int, int], tcp: bool = False
                 ) -> tuple[dns.message.Message, dns.message.Message]:
    """Send `q` to ``e.handle`` once with each ID in `ids`; return both replies.

    Each reply must carry its own query's ID and otherwise be the same bytes as the other.
    """
    replies = []
    for qid in ids:
        q.id = qid
        data = e.handle(q.to_wire(), tcp)
        assert data is not None
        assert data[:2] == qid.to_bytes(2, "big")
        replies.append(data)
    assert replies[0][2:] == replies[1][2:]
    first, second = (dns.message.from_wire(r) for r in replies)
    return first, second
