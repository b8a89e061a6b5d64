"""The engine: flags, zones, readiness, the SOA serial and the exactness of the reply cache.

Engines are built in-process from an ``Index`` (no etcd, no sockets). Every query is sent
twice with different IDs: the second reply normally comes from the cache, and both must
carry their own query's ID and otherwise be the same bytes.
"""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from skydns.record import decode_record, key_path, name_labels
from skyserve.index import Change, Index
from skyserve.lookup import Settings, Zone
from skyserve.pipeline.chain import Pipeline
from skyserve.pipeline.context import Settings as PipelineSettings
from tests.support.dnsutil import addresses
from tests.support.pipeline_util import handle_twice

ZONES = [Zone(name_labels("skydns.test"))]
SETTINGS = Settings(default_ttl=300, min_ttl=30)
BASE = {
    "/skydns/test/skydns/a/x1": '{"host":"10.0.0.1"}',
    "/skydns/test/skydns/other/x1": '{"host":"10.0.0.9"}',
}

# -- helpers ------------------------------------------------------------------------


def path_of(key: str) -> tuple[str, ...]:
    path = key_path(key)
    assert path is not None
    return path


def make_engine(records: dict[str, str] | None = None, *, revision: int | None = 42) -> Pipeline:
    """An engine serving ``records`` (BASE by default); ``revision=None`` leaves it unloaded."""
    e = Pipeline(PipelineSettings(ZONES, SETTINGS, max_udp=1232, shuffle=False))
    if revision is not None:
        idx = Index()
        for key, js in (BASE if records is None else records).items():
            idx.put(path_of(key), decode_record(key, js))
        e.load(idx, revision)
    return e


def put(key: str, js: str) -> Change:
    return Change(path_of(key), key, record=decode_record(key, js))


def delete(key: str) -> Change:
    return Change(path_of(key), key)


def query(name: str, rdtype: str = "A", **kwargs: object) -> dns.message.Message:
    return dns.message.make_query(name, rdtype, **kwargs)  # type: ignore[arg-type]


def ask_both(
    e: Pipeline, q: dns.message.Message | str, rdtype: str = "A"
) -> tuple[dns.message.Message, dns.message.Message]:
    """Send a query twice with different IDs; check the IDs, return both replies."""
    if isinstance(q, str):
        q = query(q, rdtype)
    return handle_twice(e, q, ids=(0x2A2A, 0x0607))


def ask(e: Pipeline, q: dns.message.Message | str, rdtype: str = "A") -> dns.message.Message:
    return ask_both(e, q, rdtype)[1]


def serial(reply: dns.message.Message) -> int:
    [soa] = [rrset for rrset in reply.authority if rrset.rdtype == dns.rdatatype.SOA]
    return int(soa[0].serial)


def uncached(e: Pipeline) -> Pipeline:
    """A second engine over the same index and revision, with an empty cache."""
    fresh = Pipeline(PipelineSettings(ZONES, SETTINGS, max_udp=1232, shuffle=False))
    fresh.load(e.zones.authority.index, e.revision)
    return fresh


def assert_exact(e: Pipeline, name: str, rdtype: str = "A") -> dns.message.Message:
    """``e``'s reply (cached or not) must be byte-for-byte what an uncached engine sends."""
    q = query(name, rdtype)
    got = e.handle(q.to_wire(), False)
    want = uncached(e).handle(q.to_wire(), False)
    assert got is not None and want is not None
    reply = dns.message.from_wire(got)
    assert reply.to_text() == dns.message.from_wire(want).to_text()  # a readable diff
    assert got == want
    return reply


# -- flags --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode", "answers"),
    [
        ("a.skydns.test", "A", dns.rcode.NOERROR, 1),
        ("nx.skydns.test", "A", dns.rcode.NXDOMAIN, 0),
        ("a.skydns.test", "AAAA", dns.rcode.NOERROR, 0),  # NODATA
        ("skydns.test", "SOA", dns.rcode.NOERROR, 1),
    ],
)
@pytest.mark.parametrize("rd", [True, False])
@pytest.mark.parametrize("cd", [True, False])
def test_flags_on_answers_from_our_zones(
    name: str, rdtype: str, rcode: int, answers: int, rd: bool, cd: bool
) -> None:
    e = make_engine()
    q = query(name, rdtype)
    q.flags = (dns.flags.RD if rd else 0) | (dns.flags.CD if cd else 0)
    for reply in ask_both(e, q):
        assert reply.rcode() == rcode
        assert reply.flags & dns.flags.QR
        assert reply.flags & dns.flags.AA
        assert not reply.flags & dns.flags.RA
        assert not reply.flags & dns.flags.TC
        assert bool(reply.flags & dns.flags.RD) is rd
        assert bool(reply.flags & dns.flags.CD) is cd
        assert sum(len(rrset) for rrset in reply.answer) == answers
        if answers == 0:
            assert serial(reply) == 42
    # Cached by the second time at the latest (direct answers on their second sighting).
    hits = e.stats.answer_hits
    assert e.handle(q.to_wire()) is not None
    assert e.stats.answer_hits == hits + 1


@pytest.mark.parametrize("name", ["example.com", "test", "notskydns.test", "skydns.test.example"])
@pytest.mark.parametrize("rd", [True, False])
def test_names_outside_our_zones_are_refused(name: str, rd: bool) -> None:
    q = query(name)
    q.flags = dns.flags.RD | dns.flags.CD if rd else 0
    for reply in ask_both(make_engine(), q):
        assert reply.rcode() == dns.rcode.REFUSED
        assert reply.flags & dns.flags.QR
        assert not reply.flags & (dns.flags.AA | dns.flags.RA | dns.flags.TC)
        assert bool(reply.flags & dns.flags.RD) is rd
        assert bool(reply.flags & dns.flags.CD) is rd
        assert reply.question == q.question
        assert not reply.answer and not reply.authority and not reply.additional


@pytest.mark.parametrize("rdclass", [dns.rdataclass.CH, dns.rdataclass.HS, dns.rdataclass.ANY])
def test_other_classes_are_refused(rdclass: int) -> None:
    q = dns.message.make_query("a.skydns.test", "A", rdclass)
    for reply in ask_both(make_engine(), q):
        assert reply.rcode() == dns.rcode.REFUSED
        assert not reply.flags & dns.flags.AA
        assert not reply.answer


# -- case -----------------------------------------------------------------------------


def test_answer_owner_echoes_the_clients_case() -> None:
    e = make_engine()
    for reply in ask_both(e, "A.SkyDNS.Test"):
        assert reply.question[0].name.to_text() == "A.SkyDNS.Test."
        [rrset] = reply.answer
        assert rrset.name.to_text() == "A.SkyDNS.Test."
        assert [rd.address for rd in rrset] == ["10.0.0.1"]
    # Another spelling is another cache entry, with its own case. A direct answer is
    # cached on its name's second sighting, whatever the case of its letters: the first
    # reply of this spelling is kept, the other three are hits.
    for reply in (*ask_both(e, "a.skydns.TEST"), *ask_both(e, "a.skydns.TEST")):
        assert reply.answer[0].name.to_text() == "a.skydns.TEST."
    assert e.stats.answer_hits == 3


# -- readiness ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [("a.skydns.test", "A"), ("nx.skydns.test", "A"), ("skydns.test", "SOA"),
     ("Deep.Below.skydns.test", "TXT")],
)
def test_before_the_first_load_our_names_get_servfail(name: str, rdtype: str) -> None:
    e = make_engine(revision=None)
    for reply in ask_both(e, name, rdtype):
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert not reply.answer and not reply.authority
    for reply in ask_both(e, "example.com"):
        assert reply.rcode() == dns.rcode.REFUSED
    # SERVFAIL is not cached: once loaded, the same query is answered.
    idx = Index()
    idx.put(path_of("/skydns/test/skydns/a/x1"), decode_record("/skydns/test/skydns/a/x1",
                                                                 '{"host":"10.0.0.1"}'))
    e.load(idx, 7)
    reply = ask(e, name, rdtype)
    assert reply.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
    assert reply.flags & dns.flags.AA


# -- SOA serial -----------------------------------------------------------------------


def test_soa_serial_is_the_revision_even_from_the_cache() -> None:
    e = make_engine()
    first, second = ask_both(e, "nx.skydns.test")
    assert first.rcode() == dns.rcode.NXDOMAIN
    assert serial(first) == serial(second) == 42
    nodata = ask(e, "a.skydns.test", "TXT")
    assert serial(nodata) == 42
    assert ask(e, "skydns.test", "SOA").answer[0][0].serial == 42

    e.apply([put("/skydns/test/skydns/unrelated/x1", '{"host":"10.0.0.2"}')], 57)
    hits = e.stats.answer_hits
    reply = ask(e, "nx.skydns.test")
    assert e.stats.answer_hits == hits + 2  # still cached, yet with the new serial
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert serial(reply) == 57
    assert serial(ask(e, "a.skydns.test", "TXT")) == 57
    assert ask(e, "skydns.test", "SOA").answer[0][0].serial == 57


def test_soa_serial_wraps_to_32_bits() -> None:
    e = make_engine(revision=2**32 + 5)
    assert serial(ask(e, "nx.skydns.test")) == 5


# -- cache exactness ------------------------------------------------------------------


def test_added_and_deleted_records_show_at_once() -> None:
    e = make_engine()
    assert addresses(ask(e, "a.skydns.test")) == ["10.0.0.1"]

    e.apply([put("/skydns/test/skydns/a/x2", '{"host":"10.0.0.2"}')], 43)
    first, second = ask_both(e, "a.skydns.test")
    assert addresses(first) == addresses(second) == ["10.0.0.1", "10.0.0.2"]

    e.apply([delete("/skydns/test/skydns/a/x1")], 44)
    first, second = ask_both(e, "a.skydns.test")
    assert addresses(first) == addresses(second) == ["10.0.0.2"]

    e.apply([delete("/skydns/test/skydns/a/x2")], 45)
    reply = ask(e, "a.skydns.test")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert serial(reply) == 45


def test_a_record_added_deeper_below_the_name_shows() -> None:
    e = make_engine()
    assert addresses(ask(e, "a.skydns.test")) == ["10.0.0.1"]
    e.apply([put("/skydns/test/skydns/a/b/c/x", '{"host":"10.0.0.3"}')], 43)
    assert addresses(ask(e, "a.skydns.test")) == ["10.0.0.1", "10.0.0.3"]


def test_unrelated_changes_do_not_evict() -> None:
    e = make_engine()
    ask(e, "a.skydns.test")
    ask(e, "nx.skydns.test")
    hits = e.stats.answer_hits
    e.apply(
        [
            put("/skydns/test/skydns/other/x2", '{"host":"10.0.0.8"}'),
            delete("/skydns/test/skydns/other/x1"),
            put("/skydns/test/skydns/b/a/x1", '{"host":"10.0.0.7"}'),  # a.b, not below a
        ],
        43,
    )
    assert addresses(ask(e, "a.skydns.test")) == ["10.0.0.1"]
    assert ask(e, "nx.skydns.test").rcode() == dns.rcode.NXDOMAIN
    assert e.stats.answer_hits == hits + 4


def test_nxdomain_becomes_an_answer_when_the_name_is_added() -> None:
    e = make_engine()
    first, second = ask_both(e, "x.skydns.test")
    assert first.rcode() == second.rcode() == dns.rcode.NXDOMAIN
    e.apply([put("/skydns/test/skydns/x", '{"host":"10.0.0.5"}')], 43)
    first, second = ask_both(e, "x.skydns.test")
    assert first.rcode() == dns.rcode.NOERROR
    assert addresses(first) == addresses(second) == ["10.0.0.5"]


def test_nxdomain_becomes_nodata_when_something_appears_below() -> None:
    e = make_engine()
    assert ask(e, "x.skydns.test").rcode() == dns.rcode.NXDOMAIN
    e.apply([put("/skydns/test/skydns/x/y", '{"text":"hello"}')], 43)
    reply = ask(e, "x.skydns.test")
    assert reply.rcode() == dns.rcode.NOERROR
    assert not reply.answer


@pytest.mark.parametrize("w_exists", [False, True])
def test_a_new_wildcard_answers_names_that_were_nxdomain(w_exists: bool) -> None:
    records = dict(BASE)
    if w_exists:
        records["/skydns/test/skydns/w/bar"] = '{"host":"10.0.0.6"}'
    e = make_engine(records)
    assert ask(e, "foo.w.skydns.test").rcode() == dns.rcode.NXDOMAIN
    e.apply([put("/skydns/test/skydns/w/*", '{"host":"10.0.0.42"}')], 43)
    first, second = ask_both(e, "foo.w.skydns.test")
    assert first.rcode() == dns.rcode.NOERROR
    assert addresses(first) == addresses(second) == ["10.0.0.42"]
    assert first.answer[0].name.to_text() == "foo.w.skydns.test."


def test_wildcard_answer_is_dropped_when_a_name_between_appears() -> None:
    # *.skydns.test answers foo.w.skydns.test only while w.skydns.test does not exist
    # (RFC 4592: w would become the closest encloser, and it has no '*').
    e = make_engine({**BASE, "/skydns/test/skydns/*": '{"host":"10.0.0.42"}'})
    assert addresses(ask(e, "foo.w.skydns.test")) == ["10.0.0.42"]
    e.apply([put("/skydns/test/skydns/w/bar", '{"host":"10.0.0.6"}')], 43)
    reply = assert_exact(e, "foo.w.skydns.test")
    assert reply.rcode() == dns.rcode.NXDOMAIN


def test_wildcard_answer_appears_when_the_name_between_goes() -> None:
    e = make_engine({
        **BASE,
        "/skydns/test/skydns/*": '{"host":"10.0.0.42"}',
        "/skydns/test/skydns/w/bar": '{"host":"10.0.0.6"}',
    })
    assert ask(e, "foo.w.skydns.test").rcode() == dns.rcode.NXDOMAIN
    e.apply([delete("/skydns/test/skydns/w/bar")], 43)
    reply = assert_exact(e, "foo.w.skydns.test")
    assert addresses(reply) == ["10.0.0.42"]


def test_deleted_wildcard_stops_answering() -> None:
    e = make_engine({**BASE, "/skydns/test/skydns/w/*": '{"host":"10.0.0.42"}'})
    assert addresses(ask(e, "foo.w.skydns.test")) == ["10.0.0.42"]
    e.apply([delete("/skydns/test/skydns/w/*")], 43)
    assert assert_exact(e, "foo.w.skydns.test").rcode() == dns.rcode.NXDOMAIN


# -- invalid records ------------------------------------------------------------------


def test_an_invalid_value_removes_the_record_it_replaces() -> None:
    e = make_engine({**BASE, "/skydns/test/skydns/a/x2": '{"host":"10.0.0.2"}'})
    assert addresses(ask(e, "a.skydns.test")) == ["10.0.0.1", "10.0.0.2"]
    key = "/skydns/test/skydns/a/x1"
    e.apply([Change(path_of(key), key, invalid="field 'port' must be an integer")], 43)
    first, second = ask_both(e, "a.skydns.test")
    assert addresses(first) == addresses(second) == ["10.0.0.2"]
    assert first.rcode() == dns.rcode.NOERROR
    assert key in e.zones.authority.index.invalid


def test_an_invalid_value_for_the_only_record_makes_the_name_nxdomain() -> None:
    e = make_engine()
    assert addresses(ask(e, "a.skydns.test")) == ["10.0.0.1"]
    key = "/skydns/test/skydns/a/x1"
    e.apply([Change(path_of(key), key, invalid="invalid JSON")], 43)
    reply = ask(e, "a.skydns.test")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert serial(reply) == 43
    # A later valid value for the same key serves again.
    e.apply([put(key, '{"host":"10.0.0.11"}')], 44)
    assert addresses(ask(e, "a.skydns.test")) == ["10.0.0.11"]
    assert key not in e.zones.authority.index.invalid


def test_multi_record_answers_rotate_between_replies() -> None:
    e = Pipeline(PipelineSettings(ZONES, SETTINGS, max_udp=1232))
    idx = Index()
    for i in range(1, 4):
        key = f"/skydns/test/skydns/rr/x{i}"
        idx.put(key_path(key), decode_record(key, f'{{"host":"10.0.0.{i}"}}'))
    e.load(idx, 1)
    firsts = []
    for _ in range(6):
        reply = dns.message.from_wire(e.handle(query("rr.skydns.test", "A").to_wire()) or b"")
        addrs = [rd.to_text() for rd in reply.answer[0]]
        assert sorted(addrs) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
        firsts.append(addrs[0])
    assert set(firsts) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}
