"""The in-memory mirror of the etcd prefix: a trie of key components.

Keys are stored by their path below the prefix, root first (``/skydns/local/skydns/x`` is
the path ``('local', 'skydns', 'x')``). A node can hold values (the keys that end exactly
there) and children at once, as etcd v3 allows. Every node knows how many valid records
its subtree holds, so "does this name exist" is one walk and empty branches are pruned.

Beside the trie, ``Index.names`` finds a node by its name as a query spells it: the
lower-case wire form (``b"\x02h1\x05bench\x04test\x00"``), so the direct stage answers
"does this name exist" with one dict lookup on the query's own bytes, as knot finds a
name in its flat table, instead of decoding the labels and walking the trie. It holds
every node a query can name (see ``flat_key``) and is kept in step by ``put`` and
``delete``, the only places nodes come and go. Its keys and slots are ~100 bytes a name.
A name that is not in it is read from its longest suffix that is (``encloser``).

Invalid values are never put in the trie: they are kept aside with the reason, counted,
and simply do not exist for DNS. A later valid put replaces them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from skydns.record import Labels, Record

WILDCARD_LABELS = frozenset(("*", "any"))
WILDCARD_WIRE = frozenset((b"\x01*", b"\x03any"))  # the same, as a query's labels (``flat_key``)


@dataclass(slots=True)
class Change:
    """One etcd event, decoded: a valid record, a rejected value, or a delete."""

    path: Labels
    key: str
    record: Record | None = None
    invalid: str | None = None  # the reason a value was rejected


# Most nodes are leaves: an empty dict is 64 bytes, so leaves share this one until they get
# a child; only ``Index`` adds children, and it gives the node its own dict first. It must
# stay empty.
_NO_CHILDREN: dict[str, Node] = {}


class Node:
    __slots__ = ("children", "count", "held", "wire")

    def __init__(self) -> None:
        self.children: dict[str, Node] = _NO_CHILDREN
        # The records whose keys end here: nearly always one (keys are unique; only keys
        # that differ in case or in empty components meet), so that one is held as itself,
        # not in a tuple of one (48 bytes a record); several are a tuple.
        self.held: Record | tuple[Record, ...] = ()
        self.count = 0  # records in this subtree, including those held here
        # The direct stage's answer record for the one address record at or below here,
        # made the first time it answers for this name (``Direct._addresses``): what is
        # read is then this one object instead of the records and their addresses (a
        # zone-wide mix: -0.5 µs a first-time answer in-process; a Service with a port,
        # its address and SRV record below its name: -4 µs). None again whenever a record
        # at or below here changes (``Index.put``, ``delete``).
        self.wire: bytes | None = None

    @property
    def values(self) -> tuple[Record, ...]:
        held = self.held
        return (held,) if isinstance(held, Record) else held

    def hold(self, records: tuple[Record, ...]) -> None:
        self.held = records[0] if len(records) == 1 else records


class Index:
    """All valid records under the prefix, plus the keys whose values were rejected."""

    def __init__(self) -> None:
        self.root = Node()
        self.invalid: dict[str, str] = {}  # etcd key -> reason it was rejected
        self.names: dict[bytes, Node] = {}  # ``flat_key(path)`` -> node, for every node

    def __len__(self) -> int:
        return self.root.count

    def apply(self, change: Change) -> None:
        """One decoded etcd event: the record put, the rejected value noted, or the key gone."""
        if change.record is not None:
            self.put(change.path, change.record)
        elif change.invalid is not None:
            self.put_invalid(change.path, change.key, change.invalid)
        else:
            self.delete(change.path, change.key)

    def put(self, path: Labels, record: Record) -> None:
        if self.invalid:
            self.invalid.pop(record.key, None)
        nodes = [self.root]
        node = self.root
        for depth, part in enumerate(path, 1):
            child = node.children.get(part)
            if child is None:
                if node.children is _NO_CHILDREN:
                    node.children = {}
                if part[:1] == "_":  # an SRV level (``_tcp``, ``_http``): one string for all
                    part = sys.intern(part)
                child = node.children[part] = Node()
                key = flat_key(path[:depth])
                if key is not None:
                    self.names[key] = child
            else:
                child.wire = None  # its subtree changes: so may its answer (``Node.wire``)
            nodes.append(child)
            node = child
        held = node.held
        if not held:  # no records here yet (a Record is true): the usual put, in fewer steps
            node.held = record
        else:
            values = node.values
            kept = tuple(r for r in values if r.key != record.key)
            node.hold((*kept, record))
            if len(kept) < len(values):
                return  # a record replaced: the counts stay
        for n in nodes:
            n.count += 1

    def put_invalid(self, path: Labels, key: str, reason: str) -> None:
        self.delete(path, key)
        self.invalid[key] = reason

    def delete(self, path: Labels, key: str) -> bool:
        """Remove a key; returns whether a valid record was removed."""
        self.invalid.pop(key, None)
        nodes = [self.root]
        node = self.root
        for part in path:
            child = node.children.get(part)
            if child is None:
                return False
            nodes.append(child)
            node = child
        values = node.values
        kept = tuple(r for r in values if r.key != key)
        if len(kept) == len(values):
            return False
        node.hold(kept)
        for n in nodes:
            n.count -= 1
            n.wire = None
        # Prune from the leaf up so that an emptied branch stops existing for DNS.
        for depth in range(len(path), 0, -1):
            if nodes[depth].count:
                break
            del nodes[depth - 1].children[path[depth - 1]]
            name = flat_key(path[:depth])
            if name is not None:
                del self.names[name]
        return True

    def find(self, path: Labels) -> Node | None:
        node = self.root
        for part in path:
            child = node.children.get(part)
            if child is None:
                return None
            node = child
        return node

    def match(self, path: Labels) -> list[Node]:
        """Nodes matching a path whose ``*``/``any`` components match any one component."""
        nodes = [self.root]
        for part in path:
            if part in WILDCARD_LABELS:
                nodes = [c for n in nodes for _, c in sorted(n.children.items())]
            else:
                nodes = [c for n in nodes if (c := n.children.get(part)) is not None]
            if not nodes:
                break
        return nodes

    def closest_encloser(self, path: Labels) -> tuple[int, Node]:
        """The deepest existing node on the path, with how many components it matched."""
        node = self.root
        for depth, part in enumerate(path):
            child = node.children.get(part)
            if child is None:
                return depth, node
            node = child
        return len(path), node


def flat_key(path: Labels) -> bytes | None:
    """A node's key in ``Index.names``: its name's wire form, lower-case as the path is.
    None for a name no plain query reaches this way: a label a query cannot spell (not
    Latin-1, over 63 octets; the direct stage reads query labels as Latin-1), over 255
    octets, or with a ``*``/``any`` label, which a query means as a wildcard. So a name
    below one in the table is in the table if it exists, unless its own first label is a
    wildcard label."""
    wire = bytearray()
    for label in reversed(path):
        if label in WILDCARD_LABELS:
            return None
        try:
            octets = label.encode("latin-1")
        except UnicodeEncodeError:
            return None
        if not 0 < len(octets) < 64:
            return None
        wire.append(len(octets))
        wire += octets
    wire.append(0)
    return bytes(wire) if len(wire) <= 255 else None


def encloser(names: dict[bytes, Node], key: bytes, at: int) -> Node | None:
    """The closest encloser of a name not in the flat table (``key``): the node of its
    longest suffix that is, found a label at a time from ``at`` on (the caller has read
    the labels before it and looked ``key[at:]`` up), which also proves the name well
    formed. None when a label is malformed or a wildcard label (``*``, ``any``: a wildcard
    query), or no suffix is in the table: the caller reads the name label by label."""
    if len(key) > 255:
        return None
    while at < len(key):
        length = key[at]
        if not 0 < length < 64 or key[at : at + length + 1] in WILDCARD_WIRE:
            return None
        at += length + 1
        node = names.get(key[at:])
        if node is not None:
            return node
    return None


def subtree(node: Node) -> list[Record]:
    """Every record at or below a node, in etcd key order (as CoreDNS reads them)."""
    out: list[Record] = []
    stack = [node]
    while stack:
        n = stack.pop()
        held = n.held  # not n.values: no tuple made for the usual one record
        if isinstance(held, Record):
            out.append(held)
        else:
            out.extend(held)
        stack.extend(n.children.values())
    out.sort(key=_by_key)
    return out


def _by_key(record: Record) -> str:
    return record.key
