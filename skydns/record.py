"""The SkyDNS record model: one JSON value per etcd key, and the name <-> key mapping.

This is the one place both programs share: skyserve decodes what it serves with it and
kube2etcd encodes what it writes with it, so the two can never disagree on the format.

A DNS name maps to a key by reversing its labels under a prefix::

    1.rails.prod.skydns.local.  <->  /skydns/local/skydns/prod/rails/1

Names are handled as tuples of lower-case labels, leftmost label first, without the root.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any, TypeVar

Labels = tuple[str, ...]

DEFAULT_PREFIX = "/skydns"
DEFAULT_PRIORITY = 10
MAX_TTL = 2**31 - 1  # RFC 2181 section 8
MAX_NAME_TEXT = 253  # a name's text without the final dot: 255 octets on the wire

# A host name label as DNS allows it in practice: letters, digits, '-', '_' and '*'.
_LABEL_TEXT = r"[A-Za-z0-9_*](?:[A-Za-z0-9_*-]{0,61}[A-Za-z0-9_*])?"
_LABEL = re.compile(_LABEL_TEXT)  # fullmatch: ``$`` would let a label end in a newline
# A whole name of such labels, one match instead of a split and a match per label
# (``check_host`` on a name: 1.6 -> ~0.5 µs; a mirror checks every PTR and CNAME it loads).
_NAME = re.compile(rf"(?:{_LABEL_TEXT}\.)*{_LABEL_TEXT}\.?")
# Digits and dots only: meant as an IPv4 address (no top-level label is all digits).
_IPV4_LIKE = re.compile(r"^[0-9.]+$")


class RecordError(ValueError):
    """A value in etcd that is not a valid SkyDNS record; the message says why."""


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded SkyDNS record (``msg.Service``), with the etcd key it came from."""

    key: str
    host: str = ""
    port: int = 0
    priority: int = DEFAULT_PRIORITY
    weight: int = 0
    text: str = ""
    mail: bool = False
    ttl: int = 0
    targetstrip: int = 0
    group: str = ""
    # The host as a packed address (4 bytes: IPv4, 16: IPv6), derived at decode time so the
    # query path never parses addresses; bytes, not an ipaddress object, for memory's sake.
    address: bytes | None = field(default=None, compare=False)

    @property
    def target(self) -> Labels:
        """The host as a name (only meaningful when ``address`` is None)."""
        return name_labels(self.host)

    def to_json(self) -> str:
        """Encode as SkyDNS JSON, leaving out fields at their zero value: what
        ``json.dumps(fields, separators=(",", ":"), sort_keys=True)`` writes, assembled by
        hand. The bridge encodes every record it writes (1.4 million at ten times its
        bench), and each ``dumps`` call there cost ~2 µs of encoder set-up for two or three
        fields. A string goes through the C function ``json.dumps`` itself calls for one
        (``encode_basestring_ascii``: the same escaping, ASCII only), without the Python
        that leads there: 0.24 -> 0.05 µs a string."""
        parts = ['"group":' + _json_string(self.group)] if self.group else []
        parts.append('"host":' + _json_string(self.host))
        if self.mail:
            parts.append('"mail":true')
        if self.port:
            parts.append(f'"port":{self.port}')
        if self.priority:
            parts.append(f'"priority":{self.priority}')
        if self.targetstrip:
            parts.append(f'"targetstrip":{self.targetstrip}')
        if self.text:
            parts.append('"text":' + _json_string(self.text))
        if self.ttl:
            parts.append(f'"ttl":{self.ttl}')
        if self.weight:
            parts.append(f'"weight":{self.weight}')
        return "{" + ",".join(parts) + "}"


# field name -> (python type, minimum, maximum); Go's encoding/json matches names
# case-insensitively, so we do too.
_INT_FIELDS: dict[str, tuple[int, int]] = {
    "port": (-1, 65535),  # -1: "no port", skipped in SRV answers (CoreDNS convention)
    "priority": (0, 65535),
    "weight": (0, 65535),
    "ttl": (0, 2**32 - 1),
    "targetstrip": (0, 127),
}
_STR_FIELDS = ("host", "text", "group")
# json.loads makes a new object for every number above 256 (32 bytes as allocated) and
# every string (a group's name: ~56 bytes), and TTLs, ports and groups repeat from record
# to record (kube2etcd writes two groups): a big zone keeps each distinct value once.
# Bounded, so odd values cannot grow them without end.
_T = TypeVar("_T", int, str)
_INTS: dict[int, int] = {}
_GROUPS: dict[str, str] = {}
_MAX_SHARED = 4096


def _shared(table: dict[_T, _T], value: _T) -> _T:
    if len(table) < _MAX_SHARED:
        return table.setdefault(value, value)
    return table.get(value, value)


def _json_text(value: bytes | str) -> bytes | str:
    """An etcd value as ``json.loads`` would read it, decoded here when that is UTF-8:
    given bytes, ``json.loads`` works out their encoding in Python on every call (~0.5 µs a
    value; a mirror decodes every record it loads). To it an object whose second octet is
    not 0 is UTF-8 (UTF-16 and UTF-32 put a 0 there; a BOM does not start with ``{``),
    decoded with the same error handler."""
    if isinstance(value, bytes) and value[:1] == b"{" and value[1:2] != b"\0":
        return value.decode("utf-8", "surrogatepass")
    return value


def decode_record(key: str, value: bytes | str) -> Record:
    """Decode one etcd value; raise RecordError naming the field that is wrong."""
    try:
        obj = json.loads(_json_text(value))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, got {type(obj).__name__}")
    fields = _DEFAULTS.copy()
    for raw_name, val in obj.items():  # JSON names are strings
        name = raw_name if raw_name in fields else raw_name.lower()
        if val is None:
            continue
        if name in _STR_FIELDS:
            if not isinstance(val, str):
                raise RecordError(f"field {name!r} must be a string, got {json.dumps(val)}")
            fields[name] = _shared(_GROUPS, val) if name == "group" else val
        elif name in _INT_FIELDS:
            if isinstance(val, bool) or not isinstance(val, int):
                raise RecordError(f"field {name!r} must be an integer, got {json.dumps(val)}")
            low, high = _INT_FIELDS[name]
            if not low <= val <= high:
                raise RecordError(f"field {name!r} out of range [{low}, {high}]: {val}")
            fields[name] = _shared(_INTS, val)
        elif name == "mail":
            if not isinstance(val, bool):
                raise RecordError(f"field 'mail' must be a boolean, got {json.dumps(val)}")
            fields[name] = val
    host = fields["host"]
    address = check_host(host) if host else None
    if not fields["priority"]:
        fields["priority"] = DEFAULT_PRIORITY  # priority 0 cannot be expressed (SkyDNS)
    fields["ttl"] = min(fields["ttl"], MAX_TTL)
    return _built(key, fields, address)


# Every JSON field at its default, from the dataclass (the key and address are not JSON's).
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclass_fields(Record)
                             if f.name not in ("key", "address")}
_new = object.__new__
_Setter = Callable[[Record, Any], None]
_SET_KEY: _Setter = vars(Record)["key"].__set__  # the slots' descriptors
_SET_ADDRESS: _Setter = vars(Record)["address"].__set__
_SETTERS: tuple[tuple[_Setter, str], ...] = tuple((vars(Record)[name].__set__, name)
                                                  for name in _DEFAULTS)


def _built(key: str, fields: dict[str, Any], address: bytes | None) -> Record:
    """``Record(key=key, address=address, **fields)`` for every field, at half the cost: a
    frozen dataclass's ``__init__`` sets each of its 11 slots through
    ``object.__setattr__`` (1.4 µs a record), where a slot's own descriptor sets it
    directly (0.8 µs). A mirror decodes every record it loads and hears."""
    record: Record = _new(Record)
    _SET_KEY(record, key)
    for set_field, name in _SETTERS:
        set_field(record, fields[name])
    _SET_ADDRESS(record, address)
    return record


def owner_of(value: bytes | str, field: str) -> str | None:
    """The owner marker ``field`` of an etcd value, or None when it has none (or is not JSON).

    SkyDNS readers ignore fields they do not know, so a writer can mark its values
    (``"kube2etcd": "cluster.local"``) and later tell them from those of other writers
    under the same names, and touch only its own.
    """
    try:
        obj = json.loads(_json_text(value))
    except (ValueError, UnicodeDecodeError):
        return None
    owner = obj.get(field) if isinstance(obj, dict) else None
    return owner if isinstance(owner, str) else None


_V4_MAPPED = bytes(10) + b"\xff\xff"


def parse_address(host: str) -> bytes | None:
    """The host as a packed IP address, or None when it is not one. IPv4-mapped IPv6 is
    IPv4. (The C parser: as strict as ``ipaddress`` - no leading zeros, four parts - and
    several times faster, which a load of a million records notices.)"""
    if not host or not (host[0].isdigit() or ":" in host):
        return None
    try:
        if ":" not in host:
            return socket.inet_pton(socket.AF_INET, host)
        packed = socket.inet_pton(socket.AF_INET6, host)
    except OSError:
        return None
    return packed[12:] if packed[:12] == _V4_MAPPED else packed


def is_ipv4(address: bytes) -> bool:
    return len(address) == 4


def check_host(host: str, *, what: str = "host") -> bytes | None:
    """A record's host: its address, or None when it is a valid host name; else RecordError.

    Something that looks like an address but is not one (``10.0.0.300``, ``2001:db8::g``)
    is an error, never a host name: served as a CNAME or SRV target it would send clients
    looking for a name that cannot exist.
    """
    address = parse_address(host)
    if address is not None:
        return address
    if ":" in host or _IPV4_LIKE.match(host):
        family = ipaddress.IPv6Address if ":" in host else ipaddress.IPv4Address
        reason = "not an address"
        try:
            family(host)
        except ValueError as exc:  # says which part is wrong, e.g. "Octet 300 (> 255)"
            reason = str(exc).replace(f" in {host!r}", "")
        raise RecordError(f"{what} {host!r} looks like an {family.__name__[:4]} address "
                          f"but is not a valid one: {reason}")
    if not (_NAME.fullmatch(host) and len(host.rstrip(".")) <= MAX_NAME_TEXT):
        check_name(host, what=what)  # says what is wrong (or accepts ``a..``, as it does)
    return None


def check_name(name: str, *, what: str = "name") -> Labels:
    """Validate a textual domain name and return its labels; raise RecordError if bad."""
    labels = name_labels(name)
    if not labels:
        raise RecordError(f"{what} {name!r} is empty")
    if len(".".join(labels)) > MAX_NAME_TEXT:
        raise RecordError(f"{what} {name!r} is longer than {MAX_NAME_TEXT} characters")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise RecordError(f"{what} {name!r} has an invalid label {label!r}")
    return labels


def name_labels(name: str) -> Labels:
    """``'A.b.C.'`` -> ``('a', 'b', 'c')``; the root is the empty tuple."""
    name = name.rstrip(".")
    if not name:
        return ()
    return tuple(name.lower().split("."))


def labels_text(labels: Labels) -> str:
    """``('a', 'b')`` -> ``'a.b.'``."""
    return ".".join(labels) + "." if labels else "."


def normalize_prefix(prefix: str) -> str:
    """``'skydns/'`` -> ``'/skydns'``; the prefix may have several components."""
    parts = [p for p in prefix.split("/") if p]
    if not parts:
        raise ValueError("etcd prefix must not be empty")
    return "/" + "/".join(parts)


def name_to_key(labels: Labels, prefix: str = DEFAULT_PREFIX) -> str:
    """The etcd key (or directory) for a name: labels reversed under the prefix."""
    return "/".join((prefix, *reversed(labels)))


def key_path(key: str, prefix: str = DEFAULT_PREFIX) -> Labels | None:
    """The key's components below the prefix, root first and lower-cased.

    Returns None for keys outside the prefix. Empty components (``//``, a trailing ``/``)
    are dropped, as CoreDNS tolerates them.
    """
    head = prefix + "/"
    if not key.startswith(head):
        return None
    # One lower() and one split for the whole key: a mirror decodes every key it loads.
    parts = key[len(head):].lower().split("/")
    return tuple(p for p in parts if p) if "" in parts else tuple(parts)


def key_to_name(key: str, prefix: str = DEFAULT_PREFIX) -> Labels | None:
    """The DNS name of a key: its path below the prefix, reversed."""
    path = key_path(key, prefix)
    return None if path is None else tuple(reversed(path))
