"""skydns.etcdrange: a gateway range response decoded a key at a time, and range ends."""

from __future__ import annotations

import base64
import json

from skydns.etcdrange import RangePage, prefix_range_end
from skydns.etcdtypes import KeyValue


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_a_page_decodes_keys_in_order_with_the_gateways_defaults_left_out() -> None:
    """64-bit numbers as strings, an empty value and a zero lease left out, as etcd sends."""
    body = json.dumps({
        "header": {"cluster_id": "11", "member_id": "12", "revision": "99", "raft_term": "3"},
        "kvs": [{"key": b64(b"/a"), "mod_revision": "5", "value": b64(b"x"), "lease": "7"},
                {"key": b64(b"/b"), "mod_revision": "6"}],
        "more": True, "count": "5"}, indent=1).encode()  # whitespace between the keys too
    page = RangePage(body)
    assert page.header == {"cluster_id": 11, "member_id": 12, "revision": 99, "raft_term": 3}
    assert page.more
    assert page.following() == b"/b\0"
    assert list(page) == [KeyValue("/a", b"x", 5, 7), KeyValue("/b", b"", 6, 0)]
    assert (page.count, page.size) == (2, 5)


def test_a_page_without_keys() -> None:
    page = RangePage(b'{"header":{"revision":"4"}}')
    assert (page.revision, page.more, page.following(), list(page)) == (4, False, None, [])


def test_prefix_range_end() -> None:
    assert prefix_range_end(b"/skydns/") == b"/skydns0"
    assert prefix_range_end(b"a\xff\xff") == b"b"
    assert prefix_range_end(b"\xff") == b"\0"
