"""The in-memory index on its own: puts, deletes, pruning, and the shared empty dict."""

from __future__ import annotations

import random

from skydns.record import decode_record, key_path
from skyserve import index as index_module
from skyserve.index import Change, Index, Node, flat_key


def change(key: str, value: str | None = None) -> Change:
    path = key_path(key)
    assert path is not None
    return Change(path, key, record=decode_record(key, value) if value else None)


def test_puts_deletes_and_pruning_keep_counts_and_the_shared_empties_empty() -> None:
    idx = Index()
    keys = [f"/skydns/test/a/b{i}/x" for i in range(3)] + ["/skydns/test/a"]
    for i, key in enumerate(keys):
        idx.apply(change(key, f'{{"host":"10.0.0.{i + 1}"}}'))
    assert len(idx) == 4
    node = idx.find(("test", "a"))
    assert node is not None and node.count == 4 and len(node.values) == 1
    for key in keys[:3]:
        idx.apply(change(key))
    assert len(idx) == 1 and idx.find(("test", "a", "b0")) is None  # pruned
    idx.apply(change("/skydns/test/a"))
    assert len(idx) == 0 and idx.find(("test",)) is None
    assert index_module._NO_CHILDREN == {}


def test_a_new_leaf_shares_the_empty_dicts_until_it_holds_something() -> None:
    idx = Index()
    idx.apply(change("/skydns/test/leaf", '{"host":"10.0.0.1"}'))
    leaf = idx.find(("test", "leaf"))
    inner = idx.find(("test",))
    assert leaf is not None and inner is not None
    assert leaf.children is index_module._NO_CHILDREN  # a leaf owns no children dict
    assert inner.values == () and [r.host for r in leaf.values] == ["10.0.0.1"]
    idx.apply(change("/skydns/test/leaf", '{"host":"10.0.0.2"}'))  # replaced, not added
    assert [r.host for r in leaf.values] == ["10.0.0.2"] and len(idx) == 1
    assert index_module._NO_CHILDREN == {}


def test_keys_that_meet_on_one_node_are_all_held_and_one_is_held_alone() -> None:
    idx = Index()
    keys = ["/skydns/test/Meet", "/skydns/test/meet", "/skydns/test//meet"]  # one path
    for i, key in enumerate(keys):
        idx.apply(change(key, f'{{"host":"10.0.0.{i + 1}"}}'))
    node = idx.find(("test", "meet"))
    assert node is not None and [r.key for r in node.values] == keys and len(idx) == 3
    assert [r.key for r in index_module.subtree(idx.root)] == sorted(keys)
    idx.apply(change(keys[0]))
    idx.apply(change(keys[2]))
    assert node.held is node.values[0] and node.held.key == keys[1]  # no tuple of one
    assert [r.key for r in index_module.subtree(idx.root)] == [keys[1]]


def _names_by_walking(index: Index) -> dict[bytes, Node]:
    """``Index.names`` worked out from the trie: every node with a key, by that key."""
    out: dict[bytes, Node] = {}
    stack: list[tuple[tuple[str, ...], Node]] = [((), index.root)]
    while stack:
        path, node = stack.pop()
        key = flat_key(path)
        if path and key is not None:
            out[key] = node
        stack.extend((path + (label,), child) for label, child in node.children.items())
    return out


def test_the_flat_table_holds_exactly_the_nodes_a_query_can_name() -> None:
    """Random puts and deletes (names coming and going, a branch pruned, a wildcard, a
    label no query can spell): after each, the table is the trie's nodes by wire name."""
    rng = random.Random(5)
    # Four 63-octet labels make a name over 255 octets: not in the table either.
    labels = ["a", "b", "*", "any", "x" * 64, "\u0142", "\xe9", "a.b", "c", *(
        c * 63 for c in "vwyz")]
    index = Index()
    for _ in range(2000):
        path = ("test", *rng.sample(labels, rng.randrange(1, 5)))
        key = "/skydns/" + "/".join(path) + rng.choice(["", "/x1"])
        if rng.random() < 0.6:
            index.put(key_path(key) or (), decode_record(key, '{"host":"10.0.0.1"}'))
        else:
            index.delete(key_path(key) or (), key)
        assert index.names == _names_by_walking(index)
    assert index.names[b"\x01a\x04test\x00"] is index.find(("test", "a")) or (
        index.find(("test", "a")) is None)
    assert flat_key(("test", "\xe9")) == b"\x01\xe9\x04test\x00"
    assert flat_key(("test", "\u0142")) is None  # not Latin-1: no query spells it
    assert flat_key(("test", "x" * 64)) is None
    assert flat_key(("test", "*", "a")) is None  # a query means ``*`` as a wildcard
    longest = ("test", "v" * 63, "w" * 63, "y" * 63, "z" * 56)  # 255 octets as a name
    assert len(flat_key(longest) or b"") == 255
    assert flat_key((*longest[:-1], "z" * 57)) is None


def test_srv_levels_share_one_label_string() -> None:
    """Every Service with a port has ``_tcp`` and ``_http`` nodes: one string each for all
    of them, not two new ones a Service (~10 MiB at 100,000 Services)."""
    idx = Index()
    for i in range(2):  # each key made at run time, as the mirror's are, and split apart
        idx.apply(change(f"/skydns/local/cluster/svc/ns/s{i}/_tcp/_http/x",
                         '{"host":"s.ns.svc.cluster.local","port":80}'))
    levels = [idx.find(("local", "cluster", "svc", "ns", f"s{i}")) for i in range(2)]
    keys = [[next(iter(n.children))] for n in levels if n is not None]
    assert len(keys) == 2 and keys[0][0] == "_tcp" and keys[0][0] is keys[1][0]
