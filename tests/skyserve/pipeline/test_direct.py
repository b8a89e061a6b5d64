"""Direct answers (stage 1b) against the general path: byte for byte, counted the same.

Two pipelines serve the same index: one as configured, one whose direct stage is turned
off, so every query takes parse -> zones -> lookup -> render. Every query of a wide mix
(names that exist, do not exist, wildcards, the apex, the cluster layout, nested zones,
mixed case, EDNS with and without DO and options, TCP) is asked of both, three times with
new IDs (the first time answered, the second admitted to the answer cache, the third a
hit): the replies must be the same bytes, and so must the metrics' counts. The mix must
also be one the direct stage actually answers, shape by shape.
"""

from __future__ import annotations

import random
from collections import Counter

import dns.edns
import dns.message
import dns.rcode
import pytest

from kube2etcd.records import (
    CLUSTER_IP,
    HEADLESS,
    Domain,
    Endpoint,
    EndpointGroup,
    EndpointSet,
    Port,
    Service,
    pod_records,
    service_records,
    values,
)
from skydns.record import decode_record, key_path, name_labels
from skyserve.forward.forwarder import Forwarder
from skyserve.forward.policy import ForwardSettings
from skyserve.index import Change, Index
from skyserve.lookup import Settings, Zone, structural
from skyserve.pipeline.answers import REFILL_PERIOD
from skyserve.pipeline.chain import Pipeline
from skyserve.pipeline.context import Settings as PipelineSettings
from skyserve.pipeline.zonefacts import layout_level
from skyserve.stats import ForwardStats
from tests.support.dns_upstream import DnsUpstream

HTTP = Port("http", 80, "TCP")
ZONES = [Zone(name_labels("skydns.test")), Zone(name_labels("inner.skydns.test")),
         Zone(name_labels("cluster.local"), cluster=True), Zone(name_labels("10.in-addr.arpa"))]


def cluster_records() -> dict[str, str]:
    domain = Domain(("cluster", "local"))
    web = Service("default", "web", CLUSTER_IP, ("10.96.0.10",), ports=(HTTP,))
    web_eps = EndpointSet("default", "web-1", "web", (EndpointGroup((
        Endpoint(("10.0.0.2",)), Endpoint(("10.0.0.3",), hostname="web-0")), (HTTP,)),))
    db = Service("default", "db", HEADLESS, ports=(HTTP,))
    db_eps = EndpointSet("default", "db-1", "db", (EndpointGroup((
        Endpoint(("10.0.1.1",), hostname="db-0"),), (HTTP,)),))
    out = {**service_records(domain, web, [web_eps]), **service_records(domain, db, [db_eps]),
           **pod_records(domain, "default", "10.0.0.2")}
    return values(domain, out)


RECORDS = {
    "/skydns/test/skydns/a/x1": '{"host":"10.0.0.1"}',
    "/skydns/test/skydns/six/x1": '{"host":"2001:db8::1","ttl":60}',
    "/skydns/test/skydns/both/x1": '{"host":"10.0.0.2","ttl":30}',
    "/skydns/test/skydns/both/x2": '{"host":"2001:db8::2","ttl":40}',
    "/skydns/test/skydns/many/x1": '{"host":"10.0.0.3"}',
    "/skydns/test/skydns/many/x2": '{"host":"10.0.0.4"}',
    "/skydns/test/skydns/leaf": '{"host":"10.0.0.5","ttl":7}',
    "/skydns/test/skydns/alias/x1": '{"host":"a.skydns.test"}',
    "/skydns/test/skydns/words/x1": '{"text":"hello"}',
    "/skydns/test/skydns/deep/er/still/x1": '{"host":"10.0.0.6"}',
    "/skydns/test/skydns/grp/x1": '{"host":"10.0.0.7","group":"g1"}',
    "/skydns/test/skydns/grp/sub/x2": '{"host":"10.0.0.8","group":"g2"}',
    "/skydns/test/skydns/wild/*/x1": '{"host":"10.0.0.9"}',
    "/skydns/test/skydns/dns/apex/x1": '{"host":"10.0.0.10"}',
    "/skydns/test/skydns/inner/b/x1": '{"host":"10.0.1.1"}',
    "/skydns/arpa/in-addr/10/0/0/1": '{"host":"a.skydns.test"}',
    "/skydns/arpa/in-addr/10/0/0/2": '{"host":"10.1.1.1"}',
    **cluster_records(),
}

NAMES = [
    "a.skydns.test", "A.SkyDNS.Test", "six.skydns.test", "both.skydns.test", "many.skydns.test",
    "leaf.skydns.test", "alias.skydns.test", "words.skydns.test", "deep.skydns.test",
    "er.deep.skydns.test", "still.er.deep.skydns.test", "x1.still.er.deep.skydns.test",
    "grp.skydns.test", "sub.grp.skydns.test", "nope.skydns.test", "NoPe.a.skydns.test",
    "x.wild.skydns.test", "y.x.wild.skydns.test", "*.skydns.test", "any.a.skydns.test",
    "skydns.test", "dns.skydns.test", "ns.dns.skydns.test", "hostmaster.skydns.test",
    "x.hostmaster.skydns.test", "inner.skydns.test", "b.inner.skydns.test",
    "nx.inner.skydns.test", "1.0.0.10.in-addr.arpa", "2.0.0.10.in-addr.arpa",
    "9.0.0.10.in-addr.arpa", "web.default.svc.cluster.local", "db.default.svc.cluster.local",
    "db-0.db.default.svc.cluster.local", "web-0.web.default.svc.cluster.local",
    "svc.cluster.local", "default.svc.cluster.local", "nons.svc.cluster.local",
    "pod.cluster.local", "default.pod.cluster.local", "_udp.web.default.svc.cluster.local",
    "www.example.com.default.svc.cluster.local", "10-0-0-2.default.pod.cluster.local",
    "_http._tcp.web.default.svc.cluster.local", "outside.example.com",
]
TYPES = ["A", "AAAA", "TXT", "SRV", "MX", "CNAME", "PTR", "NS", "SOA", "ANY"]


def index() -> Index:
    idx = Index()
    for key, value in RECORDS.items():
        path = key_path(key)
        assert path is not None
        idx.put(path, decode_record(key, value))
    return idx


def pipelines(**settings: object) -> tuple[Pipeline, Pipeline]:
    """(as configured, with the direct stage off), both loaded with RECORDS."""
    out = []
    for _ in range(2):
        p = Pipeline(PipelineSettings(ZONES, Settings(min_ttl=30), **settings))  # type: ignore[arg-type]
        p.load(index(), 77)
        out.append(p)
    out[1]._direct = lambda data, tcp, start: None  # the general path only
    return out[0], out[1]


def variants(name: str, rdtype: str) -> list[dns.message.Message]:
    """The query as plain DNS, EDNS, EDNS with DO, with options, and with RD/CD flags."""
    cookie = dns.edns.GenericOption(dns.edns.COOKIE, b"\x01" * 8)
    return [
        dns.message.make_query(name, rdtype, use_edns=False),
        dns.message.make_query(name, rdtype, use_edns=0, payload=4096),
        dns.message.make_query(name, rdtype, want_dnssec=True),
        dns.message.make_query(name, rdtype, use_edns=0, options=[cookie]),
        dns.message.make_query(name, rdtype, use_edns=0, options=[dns.edns.NSIDOption(b"")]),
        dns.message.make_query(name, rdtype, use_edns=1),
        dns.message.make_query(name, rdtype, use_edns=False, flags=0x0010),  # CD, no RD
    ]


def compare(fast: Pipeline, slow: Pipeline, queries: list[tuple[bytes, bool]]) -> None:
    for data, tcp in queries:
        for qid in (b"\x12\x34", b"\xab\xcd", b"\x00\x07"):
            got = fast.handle(qid + data[2:], tcp)
            want = slow.handle(qid + data[2:], tcp)
            assert got == want, dns.message.from_wire(data).question


def change_and_compare(fast: Pipeline, slow: Pipeline, changes: list[tuple[str, str | None]],
                       revision: int, queries: list[tuple[bytes, bool]]) -> None:
    """Each change (a key and its new value, None: deleted) applied to both pipelines from
    ``revision`` on, their replies to ``queries`` compared after each."""
    for at, (key, value) in enumerate(changes, start=revision):
        path = key_path(key)
        assert path is not None
        change = Change(path, key, record=decode_record(key, value) if value else None)
        for p in (fast, slow):
            p.apply([change], at)
        compare(fast, slow, queries)


def tally(p: Pipeline) -> Counter[tuple[object, ...]]:
    """The metrics' counts, duration buckets aside (the two paths differ in speed)."""
    out: Counter[tuple[object, ...]] = Counter()
    for row in p.stats.tally.rows():
        *fields, count, _seconds = row
        out[tuple(fields[:-1])] += int(count)  # type: ignore[call-overload]
    return out


def all_queries() -> list[tuple[bytes, bool]]:
    return [(q.to_wire(), tcp) for name in NAMES for rdtype in TYPES
            for q in variants(name, rdtype) for tcp in (False, True)]


def test_direct_answers_are_the_general_paths_bytes_and_counts() -> None:
    fast, slow = pipelines(shuffle=False)
    queries = all_queries()
    compare(fast, slow, queries)
    assert tally(fast) == tally(slow)
    # Every shape was answered directly at least once.
    seen = {(r[2], r[3]) for r in fast.stats.tally.rows() if r[5] == "etcd" and r[8] == 0}
    assert {("A", "NOERROR"), ("AAAA", "NOERROR"), ("A", "NXDOMAIN"),
            ("TXT", "NXDOMAIN")} <= seen


def test_the_direct_stage_answers_the_common_shapes() -> None:
    """Guards the test above against a direct stage that quietly answers nothing."""
    fast, _ = pipelines()
    shapes = {"a.skydns.test": ("A", dns.rcode.NOERROR, 1),
              "six.skydns.test": ("A", dns.rcode.NOERROR, 0),  # NODATA
              "nope.skydns.test": ("AAAA", dns.rcode.NXDOMAIN, 0),
              "web.default.svc.cluster.local": ("A", dns.rcode.NOERROR, 1),
              "www.example.com.default.svc.cluster.local": ("A", dns.rcode.NXDOMAIN, 0),
              "b.inner.skydns.test": ("A", dns.rcode.NOERROR, 1)}
    for name, (rdtype, rcode, count) in shapes.items():
        data = dns.message.make_query(name, rdtype).to_wire()
        reply = fast._direct(data, False, 0.0)
        assert reply is not None, name
        msg = dns.message.from_wire(reply)
        assert (msg.rcode(), len(msg.answer)) == (rcode, count), name


@pytest.mark.parametrize("seed", range(3))
def test_random_names_and_changes_stay_equal(seed: int) -> None:
    """New names, case, and etcd changes after answers were cached (a wildcard appearing
    over an NXDOMAIN, a name gaining a second address, a name going away)."""
    rng = random.Random(seed)
    fast, slow = pipelines()

    def ask_random(n: int) -> None:
        names = [f"{rng.choice(['n', 'N', 'x'])}{rng.randrange(50)}.{rng.choice(['', 'q.'])}"
                 f"{rng.choice(['a.', 'wild.', 'deep.', '', 'er.deep.'])}sKydns.test"
                 if rng.random() < 0.8 else
                 f"{rng.choice(['', 'n7.', 'Web.', 'web-0.', '_tcp.'])}"
                 f"{rng.choice(['web.', 'db.', ''])}{rng.choice(['default.', ''])}"
                 f"{rng.choice(['svc', 'pod'])}.cluster.local" for _ in range(n)]
        compare(fast, slow, [(dns.message.make_query(name, rng.choice(["A", "AAAA"]),
                                                     use_edns=rng.choice([False, 0])).to_wire(),
                              rng.random() < 0.2) for name in names])

    ask_random(200)
    changes = [("/skydns/test/skydns/*/x1", '{"host":"10.9.9.9"}'),
               ("/skydns/test/skydns/a/x2", '{"host":"10.0.0.99"}'),
               ("/skydns/test/skydns/n7/x1", '{"host":"2001:db8::7"}')]
    for revision, (key, value) in enumerate(changes, start=78):
        path = key_path(key)
        assert path is not None
        for p in (fast, slow):
            p.apply([Change(path, key, record=decode_record(key, value))], revision)
        ask_random(200)
    path = key_path("/skydns/test/skydns/a/x1")
    assert path is not None
    for p in (fast, slow):
        p.apply([Change(path, "/skydns/test/skydns/a/x1")], 90)
    ask_random(200)
    assert tally(fast) == tally(slow)


def test_a_flood_of_new_names_is_not_cached() -> None:
    """Nor does it cost every later answer the doorkeeper: once a whole window of it saw
    hardly a repeat, it is offered one first-time answer in ``OFFER_EVERY``, at random. A
    name that keeps coming back is still admitted, a name asked twice seldom is."""
    fast, _ = pipelines()
    query = dns.message.make_query("r.skydns.test", "A").to_wire()
    at = query.index(b"\x01r")

    def named(label: bytes) -> bytes:
        return query[:at] + bytes([len(label)]) + label + query[at + 2 :]

    for i in range(50_000):  # the doorkeeper's false positives would be kept
        fast.handle(named(b"%06d" % i))
    assert fast.answers.size_bytes < 5 * 1000
    assert fast.answers.sampling
    twice = [named(b"twice%d" % i) for i in range(200)]
    for data in twice + twice:
        fast.handle(data)
    admitted = sum(fast.answers.get(data, False) is not None for data in twice)
    assert admitted < 40  # 200 / OFFER_EVERY ** 2 expected; without sampling, all 200
    data = named(b"again")
    for _ in range(400):  # two draws in 400 fail with a chance of ~1e-21
        fast.handle(data)
    hits = fast.stats.answer_hits
    fast.handle(data)
    assert fast.stats.answer_hits == hits + 1


def test_the_answer_record_kept_on_a_node_follows_its_name() -> None:
    """``Node.wire``, made on a name's first direct answer, follows every change to it: a
    new address, a record put below it and taken away again, another family, its own
    record gone while one below stays; and for a Service's name (its one address beside
    an SRV record), changes anywhere below it."""
    fast, slow = pipelines()
    key = "/skydns/test/skydns/fresh"
    steps = [(key, '{"host":"10.1.1.1","ttl":60}'),
             (key, '{"host":"10.1.1.2","ttl":60}'),
             (key + "/below", '{"host":"10.1.1.3","ttl":60}'),
             (key + "/below", None),
             (key, '{"host":"2001:db8::1","ttl":60}'),
             (key + "/below", '{"host":"10.1.1.3","ttl":60}'),
             (key, None),  # the name stays, for what is below it
             (key + "/below", None),
             # A Service's layout: its address, grouped, and an SRV record below its name;
             # then addresses appearing and going deeper down, of each family and group.
             (key + "/a1", '{"host":"10.1.1.4","ttl":60,"group":"service"}'),
             (key + "/_tcp/_http/s1", '{"host":"fresh.skydns.test","port":80,"ttl":60}'),
             (key + "/deep/er/x", '{"host":"10.1.1.5","ttl":60}'),
             (key + "/deep/er/x", None),
             (key + "/deep/er/x", '{"host":"2001:db8::5","ttl":60}'),
             (key + "/deep/er/x", '{"host":"10.1.1.6","ttl":60,"group":"endpoint"}'),
             (key + "/deep/er/x", None),
             (key + "/a1", '{"host":"10.1.1.7","ttl":60,"group":"service"}'),  # in place
             (key + "/_tcp/_http/s1", None),
             (key + "/a1", None),
             (key + "/deep/er/x", '{"host":"10.1.1.8","ttl":60}'),  # its one address, deep
             (key + "/txt", '{"text":"hi","ttl":60}'),
             (key + "/deep/er/x", None),  # no address left
             (key + "/txt", None)]
    queries = [(dns.message.make_query("fresh.skydns.test", t).to_wire(), False)
               for t in ("A", "AAAA")]
    change_and_compare(fast, slow, steps, 80, queries)


def test_a_reload_answers_with_its_own_default_ttl() -> None:
    """A record without a TTL of its own gets the default of the pipeline answering, also
    after a reload adopts the index its predecessor answered from: a name's one record, and
    its one address beside another record below it."""
    old = Pipeline(PipelineSettings(ZONES, Settings(min_ttl=30, default_ttl=300)))
    old.load(index(), 77)
    for revision, (key, value) in enumerate([("/skydns/test/skydns/notl", '{"host":"10.2.2.2"}'),
                                             ("/skydns/test/skydns/two/a", '{"host":"10.2.2.3"}'),
                                             ("/skydns/test/skydns/two/t", '{"text":"x"}')], 78):
        path = key_path(key)
        assert path is not None
        old.apply([Change(path, key, record=decode_record(key, value))], revision)
    new = Pipeline(PipelineSettings(ZONES, Settings(min_ttl=30, default_ttl=60)))
    for p, ttl in ((old, 300), (new, 60)):
        if p is new:
            new.adopt(old)
        for name in ("notl.skydns.test", "two.skydns.test"):
            reply = p.handle(dns.message.make_query(name, "A").to_wire())
            assert reply is not None
            assert dns.message.from_wire(reply).answer[0].ttl == ttl, name


def test_the_answer_cache_is_bounded_by_bytes() -> None:
    """Entries are estimated at their replies, keys and a fixed overhead; past the bound
    the cache starts again empty rather than grow."""
    fast, _ = pipelines(cache_bytes=3000)
    sizes = []
    for name in NAMES:
        for rdtype in ("A", "TXT", "SRV"):
            data = dns.message.make_query(name, rdtype).to_wire()
            for _ in range(2):
                fast.handle(data)
            sizes.append(fast.answers.size_bytes)
    assert max(sizes) <= 3000
    assert max(sizes) > 2000  # it filled up before starting again
    assert sizes.count(0) < len(sizes) // 2


def test_a_full_cache_keeps_what_it_has_between_refills() -> None:
    """Full again soon after it was emptied: new answers are not kept, the old ones stay
    (a zone-wide mix a little larger than the cache stays mostly cached)."""
    fast, _ = pipelines(cache_entries=4)
    queries = [dns.message.make_query(f"n{i}.skydns.test", "A").to_wire() for i in range(12)]
    for data in queries:  # NXDOMAIN: direct, kept on the second sighting
        fast.handle(data)
        fast.handle(data)

    def hit(data: bytes) -> bool:
        before = fast.stats.answer_hits
        fast.handle(data)
        return fast.stats.answer_hits > before

    # From n4 on they found it full: n0-n3 kept, the rest not.
    assert [hit(data) for data in queries] == [True] * 4 + [False] * 8
    assert not fast.answers.admits()  # so the direct stage does not even build an entry
    fast.answers._full_since = -REFILL_PERIOD  # as when it has been full that long
    assert fast.answers.admits()
    fast.handle(queries[8])  # its second sighting since it was last refused: emptied, kept
    assert [hit(queries[i]) for i in (8, 0)] == [True, False]


def raw_query(name: bytes, qtype: int = 1, opt: bytes | None = None, flags: int = 0x0100
              ) -> bytes:
    """A query with ``name`` exactly as given on the wire (odd octets, pointers), and an
    additional record ``opt`` if given."""
    head = (0x1234).to_bytes(2, "big") + flags.to_bytes(2, "big") + b"\0\1\0\0\0\0"
    return head + (b"\0\1" if opt else b"\0\0") + name + qtype.to_bytes(2, "big") + b"\0\1" + (
        opt or b"")


BARE_OPT = b"\0\0\x29\x04\xd0\0\0\0\0\0\0"
DO_OPT = b"\0\0\x29\x10\x00\0\0\x80\0\0\0"
COOKIE_OPT = b"\0\0\x29\x04\xd0\0\0\0\0\0\x0c\0\x0a\0\x08" + b"\1" * 8
# Names as a query spells them: one label holding a 0x00 octet, or another zone's apex
# octets (a suffix that is not the zone), case, Latin-1, compression pointers, wildcard
# labels, two labels below what exists, just below the apex, the apex; deeper below what
# exists (a search path's expansion), there with a wildcard label, an overlong label or a
# wildcard at the encloser; the cluster layout's own levels and the names below them.
RAW_NAMES = [
    b"\x01a\x06skydns\x04test\x00", b"\x01A\x06SKYDNS\x04Test\x00",
    b"\x03n\x00x\x06skydns\x04test\x00", b"\x03n\x00x\x01a\x06skydns\x04test\x00",
    b"\x07x\x05inner\x06skydns\x04test\x00", b"\x09ab\x06skydns\x04test\x00",
    b"\x02\xc9\xe9\x06skydns\x04test\x00", b"\x01a\xc0\x0c", b"\x01z\x01a\xc0\x0e",
    b"\x01*\x06skydns\x04test\x00", b"\x03ANY\x01a\x06skydns\x04test\x00",
    b"\x01q\x04wild\x06skydns\x04test\x00", b"\x01q\x01z\x01a\x06skydns\x04test\x00",
    b"\x03dns\x06skydns\x04test\x00", b"\x01q\x03dns\x06skydns\x04test\x00",
    b"\x0ahostmaster\x06skydns\x04test\x00", b"\x06skydns\x04test\x00",
    b"\x05inner\x06skydns\x04test\x00", b"\x01q\x05inner\x06skydns\x04test\x00",
    b"\x01b\x05inner\x06skydns\x04test\x00", b"\x04leaf\x06skydns\x04test\x00",
    b"\x03six\x06skydns\x04test\x00", b"\x05alias\x06skydns\x04test\x00",
    b"\x01q\x07default\x03svc\x07cluster\x05local\x00", b"\x01q\x03com\x00",
    b"\x3f" + b"x" * 63 + b"\x3f" + b"y" * 63 + b"\x3f" + b"z" * 63 + b"\x3d" + b"w" * 61
    + b"\x06skydns\x04test\x00",
    b"\x03www\x07example\x03com\x01a\x06skydns\x04test\x00",
    b"\x01q\x01*\x01a\x06skydns\x04test\x00", b"\x01q\x03Any\x01z\x01a\x06skydns\x04test\x00",
    b"\x01q\x40" + b"x" * 64 + b"\x06skydns\x04test\x00",
    b"\x01q\x01r\x04wild\x06skydns\x04test\x00",
    b"\x01q\x01r\x05inner\x06skydns\x04test\x00", b"\x01q\x01r\x03dns\x06skydns\x04test\x00",
    b"\x03www\x07example\x03com\x07default\x03svc\x07cluster\x05local\x00",
    b"\x03www\x07example\x03com\x03svc\x07cluster\x05local\x00",
    b"\x03web\x07default\x03svc\x07cluster\x05local\x00", b"\x03svc\x07cluster\x05local\x00",
    b"\x07default\x03SVC\x07cluster\x05local\x00", b"\x04nons\x03svc\x07cluster\x05local\x00",
    b"\x07default\x03pod\x07cluster\x05local\x00", b"\x03pod\x07cluster\x05local\x00",
    b"\x0810-0-0-2\x07default\x03pod\x07cluster\x05local\x00",
    b"\x04_tcp\x03web\x07default\x03svc\x07cluster\x05local\x00",
    b"\x04_udp\x03web\x07default\x03svc\x07cluster\x05local\x00",
    b"\x05_http\x04_tcp\x03web\x07default\x03svc\x07cluster\x05local\x00",
    b"\x05web-0\x03web\x07default\x03svc\x07cluster\x05local\x00",
]


def raw_queries() -> list[tuple[bytes, bool]]:
    return [(raw_query(name, qtype, opt, flags), tcp) for name in RAW_NAMES
            for qtype in (1, 28, 16) for opt in (None, BARE_OPT, DO_OPT, COOKIE_OPT)
            for flags in (0x0100, 0x0010) for tcp in (False, True)]


def test_names_read_from_their_wire_bytes_are_answered_as_the_general_path_does() -> None:
    """The flat table's shapes and what it must leave alone, then etcd changes: a name's
    records changing type, a rename, a wildcard appearing over new names, a delete."""
    fast, slow = pipelines()
    compare(fast, slow, raw_queries())
    changes = [
        ("/skydns/test/skydns/a/x1", '{"host":"b.skydns.test"}'),  # A -> CNAME
        ("/skydns/test/skydns/q/x1", '{"host":"10.0.0.77"}'),  # a new name
        ("/skydns/test/skydns/*/x1", '{"host":"10.9.9.9"}'),  # a wildcard over new names
        ("/skydns/test/skydns/a/x1", None),  # a gone (renamed to q above)
        ("/skydns/test/skydns/leaf", '{"host":"2001:db8::5"}'),  # A -> AAAA
    ]
    change_and_compare(fast, slow, changes, 78, raw_queries())
    assert tally(fast) == tally(slow)


def test_the_flat_table_answers_plain_shapes_without_walking_the_trie() -> None:
    fast, slow = pipelines()
    direct = fast._direct.__self__  # type: ignore[attr-defined]
    direct._walk = lambda data, tcp, start: None
    for name, want in [(b"\x01A\x06SkyDNS\x04test\x00", 1), (b"\x01q\x06skydns\x04test\x00", 0),
                       (b"\x01Q\x01a\x06skydns\x04test\x00", 0),
                       (b"\x03six\x06skydns\x04test\x00", 0),
                       (b"\x01q\x01r\x01a\x06skydns\x04test\x00", 0),
                       (b"\x03web\x07default\x03svc\x07cluster\x05local\x00", 1),
                       (b"\x03www\x07example\x03com\x07default\x03svc\x07cluster\x05local\x00", 0),
                       (b"\x0810-0-0-2\x07default\x03pod\x07cluster\x05local\x00", 1),
                       (b"\x05web-0\x03web\x07default\x03svc\x07cluster\x05local\x00", 1)]:
        for opt in (None, BARE_OPT, DO_OPT):
            data = raw_query(name, 1, opt)
            reply = direct.answer(data, False, 0.0)
            assert reply is not None, (name, opt)
            assert dns.message.from_wire(reply).answer.__len__() == want
            assert reply == slow.handle(data)


def test_the_cluster_layouts_levels_that_do_not_exist_are_answered_as_the_general_path_does(
        ) -> None:
    """A namespace or SRV level that does not exist is an NXDOMAIN like any other name, and
    the direct stage answers it; ``svc`` and ``pod`` exist even with nothing below them."""
    fast, slow = pipelines()
    levels = ["pod.cluster.local", "default.pod.cluster.local", "nons.pod.cluster.local",
              "x.nons.pod.cluster.local", "nons.svc.cluster.local", "svc.cluster.local",
              "_udp.web.default.svc.cluster.local"]
    queries = [(dns.message.make_query(name, t).to_wire(), False) for name in levels
               for t in ("A", "AAAA")]
    compare(fast, slow, queries)
    for name in ("nons.svc.cluster.local", "nons.pod.cluster.local",
                 "_udp.web.default.svc.cluster.local"):
        reply = fast._direct(dns.message.make_query(name, "A").to_wire(), False, 0.0)
        assert reply is not None and dns.message.from_wire(reply).rcode() == dns.rcode.NXDOMAIN
    pods = [(key, None) for key in RECORDS if "/cluster/pod/" in key]
    assert pods
    change_and_compare(fast, slow, pods, 78, queries)  # nothing below pod.cluster.local


def test_the_cluster_layouts_levels_are_read_from_wire_bytes_as_from_labels() -> None:
    apex = name_labels("cluster.local")
    for rel in [("svc",), ("pod",), ("svc", "ns"), ("pod", "ns"), ("svc", "ns", "web"),
                ("svc", "ns", "_tcp"), ("svc", "ns", "web", "_tcp"), ("pod", "ns", "web", "_tcp"),
                ("svc", "ns", "web", "web-0"), ("svc", "ns", "web", "_tcp", "_http"),
                ("svcs", "ns"), ("x",), ("x", "svc"), ("_x", "ns", "svc", "svc")]:
        labels = (*reversed(rel), *apex)
        key = b"".join(bytes([len(label)]) + label.encode() for label in labels) + b"\0"
        below = sum(len(label) + 1 for label in labels[: len(rel) - 1])
        assert layout_level(key, below, below + len(rel[0]) + 1) == structural(rel), rel


def test_a_fallthrough_zones_new_names_are_left_to_the_zones_stage() -> None:
    """With a forwarder, a name we do not have in a ``fallthrough`` zone may be forwarded:
    the zones stage decides, so the direct stage must not answer it NXDOMAIN (names that
    exist it still answers)."""
    upstream = DnsUpstream().start()
    try:
        fwd = Forwarder(ForwardSettings(upstreams=(upstream.address,)), None, ForwardStats())
        fast = Pipeline(PipelineSettings(ZONES, Settings(min_ttl=30),
                                         fallthrough=frozenset(ZONES[:1])), forwarder=fwd)
        fast.load(index(), 77)
        for opt in (None, COOKIE_OPT):
            new = raw_query(b"\x01q\x06skydns\x04test\x00", 1, opt)
            assert fast._direct(new, False, 0.0) is None
            there = raw_query(b"\x01a\x06skydns\x04test\x00", 1, opt)
            assert fast._direct(there, False, 0.0) is not None
    finally:
        upstream.close()
