"""skydns.record: DNS names <-> etcd keys, and SkyDNS JSON values decoded and encoded."""

import ipaddress
import json
import random
from typing import Any

import pytest

from skydns.record import (
    Record,
    RecordError,
    check_name,
    decode_record,
    key_path,
    key_to_name,
    name_labels,
    name_to_key,
    normalize_prefix,
)


def test_name_key_round_trip() -> None:
    labels = name_labels("1.Rails.prod.east.skydns.local.")
    assert labels == ("1", "rails", "prod", "east", "skydns", "local")
    key = name_to_key(labels)
    assert key == "/skydns/local/skydns/east/prod/rails/1"
    assert key_to_name(key) == labels


def test_key_path_tolerates_empty_components_and_rejects_other_prefixes() -> None:
    assert key_path("/skydns/local//x/", "/skydns") == ("local", "x")
    assert key_path("/skydnsx/local", "/skydns") is None
    assert key_path("/a/b/local/X", "/a/b") == ("local", "x")


def test_key_path_lowers_each_component_as_it_would_alone() -> None:
    """The key is lower-cased whole, not part by part: the same components, also where
    Unicode lower-casing looks at neighbours (a final sigma ends a component) or changes a
    length (a dotted capital I)."""
    rng = random.Random(11)
    pieces = ["A", "b", "\u03a3", "\u0391\u03a3", "\u0130", "x-Y", "", "_tcp", "\u00c9", "."]
    for _ in range(3000):
        parts = [rng.choice(pieces) + rng.choice(pieces) for _ in range(rng.randrange(1, 6))]
        key = "/skydns/" + "/".join(parts) + rng.choice(["", "/"])
        want = tuple(p.lower() for p in key[len("/skydns/"):].split("/") if p)
        assert key_path(key) == want, key
    assert key_path("/skydns/\u0391\u03a3/B") == ("\u03b1\u03c2", "b")  # final sigma


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le",
                                      "utf-16-be", "utf-32", "utf-32-le"])
def test_a_value_in_any_json_encoding_decodes_as_its_text(encoding: str) -> None:
    """Bytes are read as ``json.loads`` reads them (RFC 8259 wants UTF-8; Python's reader
    also takes UTF-16 and UTF-32, with or without a BOM), UTF-8 without its help."""
    text = '{"host":"10.0.0.1","text":"caf\\u00e9 \\ud83d\\ude00 \u00e9","ttl":7}'
    key = "/skydns/test/x"
    assert decode_record(key, text.encode(encoding)) == decode_record(key, text)
    assert decode_record(key, text.encode(encoding)).text == "caf\u00e9 \U0001f600 \u00e9"
    with pytest.raises(RecordError, match=r"invalid JSON.*utf-8"):
        decode_record(key, b'{"host":"\xff"}')


def test_prefix_normalisation() -> None:
    assert normalize_prefix("skydns/") == "/skydns"
    assert normalize_prefix("/app1/skydns") == "/app1/skydns"
    with pytest.raises(ValueError):
        normalize_prefix("/")


def test_decode_full_record() -> None:
    r = decode_record(
        "/skydns/x", '{"Host":"10.0.0.1","port":8080,"priority":20,"weight":5,'
        '"text":"t","mail":true,"ttl":60,"targetstrip":1,"group":"g","unknown":1}'
    )
    assert (r.host, r.port, r.priority, r.weight, r.text) == ("10.0.0.1", 8080, 20, 5, "t")
    assert (r.mail, r.ttl, r.targetstrip, r.group) == (True, 60, 1, "g")
    assert r.address == bytes([10, 0, 0, 1])


def test_decode_defaults_and_nulls() -> None:
    r = decode_record("/skydns/x", '{"host":"svc.example.","priority":0,"port":null}')
    assert r.priority == 10 and r.port == 0 and r.address is None
    assert r.target == ("svc", "example")


def test_ipv6_and_mapped_addresses() -> None:
    v6 = decode_record("/k", '{"host":"2001:db8::1"}').address
    assert v6 == ipaddress.ip_address("2001:db8::1").packed
    mapped = decode_record("/k", '{"host":"::ffff:10.1.2.3"}').address
    assert mapped == bytes([10, 1, 2, 3])  # IPv4-mapped IPv6 is IPv4


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ('{"host":"10.0.0.1","port":"8080"}', "port"),
        ('{"host":"10.0.0.1","ttl":"30"}', "ttl"),
        ('{"host":"10.0.0.1","ttl":-1}', "ttl"),
        ('{"host":"10.0.0.1","mail":1}', "mail"),
        ('{"host":5}', "host"),
        ('{"host":"10.0.0.1","port":true}', "port"),
        ('{"host":"10.0.0.1","port":70000}', "port"),
    ],
)
def test_wrong_types_name_the_field(value: str, field: str) -> None:
    with pytest.raises(RecordError, match=field):
        decode_record("/skydns/x", value)


@pytest.mark.parametrize("value", ["not json", "[1,2]", '"str"', "\xff"])
def test_not_an_object(value: str) -> None:
    with pytest.raises(RecordError):
        decode_record("/skydns/x", value)


def test_bad_host_name_is_rejected() -> None:
    with pytest.raises(RecordError, match="host"):
        decode_record("/skydns/x", '{"host":"bad name.example"}')


@pytest.mark.parametrize("host, family", [
    ("10.0.0.300", "IPv4"), ("999.1.1.1", "IPv4"), ("10.0.0", "IPv4"), ("10.0.0.1.", "IPv4"),
    ("2001:db8::g", "IPv6"), ("1::2::3", "IPv6"),
])
def test_a_host_that_looks_like_an_address_is_no_name(host: str, family: str) -> None:
    """Served as a CNAME or SRV target, 10.0.0.300 would send clients after a name that
    cannot exist: the value is invalid, and says why."""
    with pytest.raises(RecordError, match=f"looks like an {family} address but is not a valid"):
        decode_record("/skydns/x", json.dumps({"host": host}))


def test_host_names_and_addresses_are_still_accepted() -> None:
    assert decode_record("/skydns/x", '{"host":"10.0.0.1"}').address is not None
    for name in ("web.example.org", "10-0-0-1.example.org", "host1.", "0a.example"):
        assert decode_record("/skydns/x", json.dumps({"host": name})).address is None


def test_check_name() -> None:
    assert check_name("a-b.c_d.example.") == ("a-b", "c_d", "example")
    for bad in ("-a.example", "a..b", "a" * 64 + ".x", "", "a\n.example", "a.example\n"):
        with pytest.raises(RecordError):
            check_name(bad)


@pytest.mark.parametrize("host", ["a\n.example", "web.example\n", "web.example.\n"])
def test_a_host_name_with_a_newline_is_rejected(host: str) -> None:
    """A label pattern anchored with ``$`` lets a label end in a newline."""
    with pytest.raises(RecordError, match="invalid label"):
        decode_record("/skydns/x", json.dumps({"host": host}))


@pytest.mark.parametrize("seed", range(3))
def test_a_decoded_record_holds_every_field_as_the_constructor_does(seed: int) -> None:
    """Records are built without the dataclass's ``__init__``: every field of random
    values (names in any case and order, nulls, unknown fields) against the record the
    constructor makes of the same fields."""
    rng = random.Random(seed)
    hosts = {"": None, "10.1.2.3": bytes([10, 1, 2, 3]), "web.Example.": None,
             "2001:db8::1": ipaddress.ip_address("2001:db8::1").packed, "_x._tcp.a": None}
    for _ in range(2000):
        host = rng.choice(list(hosts))
        want: dict[str, Any] = {
            "host": host, "port": rng.choice([0, -1, 80]), "priority": rng.choice([5, 10]),
            "weight": rng.choice([0, 7]), "text": rng.choice(["", "t", "é"]),
            "mail": rng.choice([False, True]), "ttl": rng.choice([0, 30, 2**32 - 1]),
            "targetstrip": rng.choice([0, 3]), "group": rng.choice(["", "g"])}
        obj = {(k.upper() if rng.random() < 0.3 else k): v for k, v in want.items()
               if v or rng.random() < 0.5}
        absent = [k for k in want if k not in obj and k.upper() not in obj]
        obj.update(rng.choice([{}, {"unknown": 1}, {"kube2etcd": "x"},
                               {k: None for k in absent[:1]}]))  # null: the default
        items = list(obj.items())
        rng.shuffle(items)
        got = decode_record("/skydns/k", json.dumps(dict(items)))
        want["ttl"] = min(want["ttl"], 2**31 - 1)
        expected = Record(key="/skydns/k", address=hosts[host], **want)
        assert [getattr(got, f) for f in Record.__slots__] == \
            [getattr(expected, f) for f in Record.__slots__]


def test_to_json_round_trip() -> None:
    r = Record(key="/skydns/k", host="10.0.0.1", port=53, priority=10, ttl=30)
    again = decode_record("/skydns/k", r.to_json())
    assert again == r


FIELDS = ("port", "priority", "weight", "text", "mail", "ttl", "targetstrip", "group")


@pytest.mark.parametrize("seed", range(3))
def test_to_json_is_what_json_dumps_writes_of_the_set_fields(seed: int) -> None:
    """The hand-assembled encoding against ``json.dumps`` of the non-zero fields, sorted and
    without spaces: every field, at zero and not, with strings that need escaping."""
    rng = random.Random(seed)
    texts = ["", "a", "10.0.0.1", 'quote" back\\slash', "é ☃ 😀", "\x00\x1f\t"]
    for _ in range(2000):
        r = Record(key="/skydns/k", host=rng.choice(texts), port=rng.choice([0, -1, 80, 65535]),
                   priority=rng.choice([0, 10]), weight=rng.choice([0, 100]),
                   text=rng.choice(texts), mail=rng.choice([False, True]),
                   ttl=rng.choice([0, 30, 2**32 - 1]), targetstrip=rng.choice([0, 127]),
                   group=rng.choice(texts))
        fields = {"host": r.host, **{f: getattr(r, f) for f in FIELDS if getattr(r, f)}}
        assert r.to_json() == json.dumps(fields, separators=(",", ":"), sort_keys=True)



def test_a_zone_keeps_one_string_for_each_group() -> None:
    """kube2etcd writes two groups on hundreds of thousands of records: each decoded
    record would otherwise hold a string of its own."""
    a, b = (decode_record(f"/skydns/x/{i}", '{"host":"10.0.0.1","group":"service"}')
            for i in range(2))
    assert a.group == "service" and a.group is b.group
