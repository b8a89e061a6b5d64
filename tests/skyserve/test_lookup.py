"""The SkyDNS serving rules, checked on the lookup layer (no wire, no etcd)."""

from __future__ import annotations

from skydns.record import decode_record, key_path, name_labels
from skyserve.index import Index
from skyserve.lookup import Authority, Result, Settings, Zone
from skyserve.wire import constants as T
from skyserve.wire.constants import NOERROR, NOTIMP, NXDOMAIN
from tests.support.rrtext import show

ZONES = ["skydns.test", "example.org", "10.in-addr.arpa"]


def authority(records: dict[str, str], **settings: int) -> Authority:
    index = Index()
    for key, value in records.items():
        index.put(key_path(key) or (), decode_record(key, value))
    zones = [Zone(name_labels(z)) for z in ZONES]
    return Authority(index, zones, Settings(**settings))


def ask(auth: Authority, name: str, qtype: int) -> Result:
    labels = name_labels(name)
    zone = auth.zone_of(labels)
    assert zone is not None
    return auth.answer(labels, qtype, zone)


def answers(auth: Authority, name: str, qtype: int) -> list[str]:
    return show(ask(auth, name, qtype).answer)


def data(auth: Authority, name: str, qtype: int) -> list[str]:
    return sorted(s.split(" ", 2)[2] for s in answers(auth, name, qtype))


BASE = {
    "/skydns/test/skydns/a/x1": '{"host":"10.0.0.1"}',
    "/skydns/test/skydns/a/x2": '{"host":"10.0.0.2","ttl":60}',
    "/skydns/test/skydns/a/x3": '{"host":"2001:db8::1"}',
    "/skydns/test/skydns/region1/dev/server1": '{"host":"10.1.0.1","port":8080}',
    "/skydns/test/skydns/region1/prod/server2": '{"host":"10.1.0.2","port":8081}',
}


def test_a_and_aaaa_of_a_name() -> None:
    auth = authority(BASE)
    assert data(auth, "a.skydns.test", T.A) == ["10.0.0.1", "10.0.0.2"]
    assert data(auth, "a.skydns.test", T.AAAA) == ["2001:db8::1"]


def test_name_returns_whole_subtree() -> None:
    auth = authority(BASE)
    assert data(auth, "region1.skydns.test", T.A) == ["10.1.0.1", "10.1.0.2"]


def test_nxdomain_only_when_nothing_at_or_below() -> None:
    auth = authority(BASE)
    res = ask(auth, "nothing.skydns.test", T.A)
    assert res.rcode == NXDOMAIN and not res.answer
    assert [r.rtype for r in res.authority] == [T.SOA]
    # Empty non-terminal: exists, but has no TXT -> NODATA with SOA.
    res = ask(auth, "dev.region1.skydns.test", T.TXT)
    assert res.rcode == NOERROR and not res.answer and res.authority[0].rtype == T.SOA
    assert res.authority[0].ttl == 30


def test_negative_ttl_is_min_ttl() -> None:
    auth = authority(BASE, min_ttl=7)
    assert ask(auth, "nothing.skydns.test", T.A).authority[0].ttl == 7


def test_default_ttl_and_rrset_ttl_uniform_after_rendering() -> None:
    auth = authority(BASE, default_ttl=120)
    ttls = {r.ttl for r in ask(auth, "a.skydns.test", T.A).answer}
    assert ttls == {120, 60}  # rrsets() evens them out when rendering


def test_query_wildcards_match_one_label() -> None:
    auth = authority(BASE)
    assert data(auth, "*.region1.skydns.test", T.A) == ["10.1.0.1", "10.1.0.2"]
    assert data(auth, "server1.any.region1.skydns.test", T.A) == ["10.1.0.1"]
    # The part before the wildcard exists but nothing matches: NODATA, not NXDOMAIN.
    res = ask(auth, "nope.*.region1.skydns.test", T.A)
    assert res.rcode == NOERROR and not res.answer
    assert ask(auth, "*.nothing.skydns.test", T.A).rcode == NXDOMAIN


def test_wildcard_records_answer_missing_names_only() -> None:
    auth = authority(
        {
            "/skydns/test/skydns/w/*": '{"host":"10.9.9.9"}',
            "/skydns/test/skydns/w/real": '{"host":"10.9.9.1"}',
        }
    )
    res = ask(auth, "foo.w.skydns.test", T.A)
    assert show(res.answer) == ["foo.w.skydns.test 1 10.9.9.9"]
    assert data(auth, "deep.foo.w.skydns.test", T.A) == ["10.9.9.9"]
    assert data(auth, "real.w.skydns.test", T.A) == ["10.9.9.1"]
    assert ask(auth, "foo.other.skydns.test", T.A).rcode == NXDOMAIN


def test_wildcard_does_not_cross_an_existing_closer_node() -> None:
    auth = authority(
        {
            "/skydns/test/skydns/w/*": '{"host":"10.9.9.9"}',
            "/skydns/test/skydns/w/b/c": '{"host":"10.9.9.3"}',
        }
    )
    # b.w exists, so a.b.w's closest encloser is b.w, which has no '*': NXDOMAIN (RFC 4592).
    assert ask(auth, "a.b.w.skydns.test", T.A).rcode == NXDOMAIN


def test_cname_chase_inside_zones() -> None:
    auth = authority(
        BASE
        | {
            "/skydns/test/skydns/alias": '{"host":"a.skydns.test"}',
            "/skydns/org/example/www": '{"host":"alias.skydns.test."}',
        }
    )
    res = ask(auth, "www.example.org", T.A)
    assert show(res.answer) == [
        "a.skydns.test 1 10.0.0.1",
        "a.skydns.test 1 10.0.0.2",
        "alias.skydns.test 5 a.skydns.test",
        "www.example.org 5 alias.skydns.test",
    ]
    # Chain order: each CNAME precedes what it points to.
    assert [r.rtype for r in res.answer][:2] == [T.CNAME, T.CNAME]


def test_cname_out_of_zone_is_left_to_the_client() -> None:
    auth = authority({"/skydns/test/skydns/ext": '{"host":"www.elsewhere.net"}'})
    res = ask(auth, "ext.skydns.test", T.A)
    assert res.rcode == NOERROR
    assert show(res.answer) == ["ext.skydns.test 5 www.elsewhere.net"]


def test_cname_to_missing_in_zone_name_is_nxdomain() -> None:
    auth = authority({"/skydns/test/skydns/dangling": '{"host":"gone.skydns.test"}'})
    res = ask(auth, "dangling.skydns.test", T.A)
    assert res.rcode == NXDOMAIN  # RFC 6604: the rcode is the last name's
    assert show(res.answer) == ["dangling.skydns.test 5 gone.skydns.test"]


def test_cname_loops_and_self_references_stop() -> None:
    auth = authority(
        {
            "/skydns/test/skydns/l1": '{"host":"l2.skydns.test"}',
            "/skydns/test/skydns/l2": '{"host":"l1.skydns.test"}',
            "/skydns/test/skydns/self/x": '{"host":"y.self.skydns.test"}',
        }
    )
    res = ask(auth, "l1.skydns.test", T.A)
    # Each CNAME of the loop once, as knot answers it (issue 10; it used to stop at one).
    assert show(res.answer) == ["l1.skydns.test 5 l2.skydns.test",
                                "l2.skydns.test 5 l1.skydns.test"]
    assert res.rcode == NOERROR and not res.authority
    assert ask(auth, "self.skydns.test", T.A).answer == []


def test_cname_chain_limit() -> None:
    records = {f"/skydns/test/skydns/c{i}": f'{{"host":"c{i + 1}.skydns.test"}}' for i in range(30)}
    res = ask(authority(records), "c0.skydns.test", T.A)
    assert 1 <= len(res.answer) <= 11


def test_no_cname_beside_addresses() -> None:
    auth = authority(
        {
            "/skydns/test/skydns/mix/a": '{"host":"10.0.0.1"}',
            "/skydns/test/skydns/mix/b": '{"host":"other.skydns.test"}',
        }
    )
    assert answers(auth, "mix.skydns.test", T.A) == ["mix.skydns.test 1 10.0.0.1"]


def test_cname_qtype_is_not_chased() -> None:
    auth = authority(BASE | {"/skydns/test/skydns/alias": '{"host":"a.skydns.test"}'})
    assert answers(auth, "alias.skydns.test", T.CNAME) == ["alias.skydns.test 5 a.skydns.test"]
    res = ask(auth, "a.skydns.test", T.CNAME)
    assert res.rcode == NOERROR and not res.answer


def test_srv_targets_weights_and_glue() -> None:
    auth = authority(
        {
            "/skydns/test/skydns/svc/a": '{"host":"10.0.0.1","port":80,"weight":1}',
            "/skydns/test/skydns/svc/b": '{"host":"10.0.0.2","port":80,"weight":3}',
            "/skydns/test/skydns/svc/c": '{"host":"10.0.0.3","port":81,"priority":20}',
            "/skydns/test/skydns/svc/n": '{"host":"web.example.org","port":443,"priority":30}',
            "/skydns/test/skydns/svc/skip": '{"host":"10.0.0.4","port":-1}',
            "/skydns/org/example/web": '{"host":"192.0.2.7"}',
        }
    )
    res = ask(auth, "svc.skydns.test", T.SRV)
    assert show(res.answer) == [
        "svc.skydns.test 33 10 25 80 a.svc.skydns.test",
        "svc.skydns.test 33 10 75 80 b.svc.skydns.test",
        "svc.skydns.test 33 20 100 81 c.svc.skydns.test",
        "svc.skydns.test 33 30 100 443 web.example.org",
    ]
    assert show(res.additional) == [
        "a.svc.skydns.test 1 10.0.0.1",
        "b.svc.skydns.test 1 10.0.0.2",
        "c.svc.skydns.test 1 10.0.0.3",
        "web.example.org 1 192.0.2.7",
    ]


def test_srv_weight_never_zero_and_targetstrip() -> None:
    records = {f"/skydns/test/skydns/many/h{i}": '{"host":"10.0.0.1","port":1}' for i in range(150)}
    records["/skydns/test/skydns/strip/x/y"] = '{"host":"10.0.0.9","port":2,"targetstrip":1}'
    auth = authority(records)
    assert all(r.rdata[1] >= 1 for r in ask(auth, "many.skydns.test", T.SRV).answer)
    res = ask(auth, "strip.skydns.test", T.SRV)
    assert data(auth, "strip.skydns.test", T.SRV) == ["10 100 2 x.strip.skydns.test"]
    assert show(res.additional) == ["x.strip.skydns.test 1 10.0.0.9"]


def test_rfc2782_names() -> None:
    auth = authority(
        {"/skydns/test/skydns/svc/_tcp/_http/x": '{"host":"10.0.0.3","port":80}'}
    )
    assert data(auth, "_http._tcp.svc.skydns.test", T.SRV) == [
        "10 100 80 x._http._tcp.svc.skydns.test"
    ]


def test_mx_only_mail_records() -> None:
    auth = authority(
        {
            "/skydns/test/skydns/mail/a": '{"host":"mx1.example.org","mail":true,"priority":5}',
            "/skydns/test/skydns/mail/b": '{"host":"10.0.0.8","mail":true,"targetstrip":1}',
            "/skydns/test/skydns/mail/c": '{"host":"10.0.0.9"}',
        }
    )
    res = ask(auth, "mail.skydns.test", T.MX)
    assert data(auth, "mail.skydns.test", T.MX) == ["10 mail.skydns.test", "5 mx1.example.org"]
    # Glue is owned by the (stripped) target itself, unlike SkyDNS/CoreDNS.
    assert show(res.additional) == ["mail.skydns.test 1 10.0.0.8"]
    res = ask(auth, "c.mail.skydns.test", T.MX)
    assert res.rcode == NOERROR and not res.answer


def test_txt_records() -> None:
    auth = authority(
        {
            "/skydns/test/skydns/t/a": '{"text":"hello"}',
            "/skydns/test/skydns/t/b": '{"host":"10.0.0.1","text":"owner=me"}',
            "/skydns/test/skydns/t/c": '{"host":"10.0.0.2"}',
            "/skydns/test/skydns/alias": '{"host":"t.skydns.test"}',
        }
    )
    assert data(auth, "t.skydns.test", T.TXT) == ["hello", "owner=me"]
    # A record with text and an address answers both types.
    assert data(auth, "b.t.skydns.test", T.A) == ["10.0.0.1"]
    # TXT through a CNAME.
    assert data(auth, "alias.skydns.test", T.TXT) == ["hello", "owner=me", "t.skydns.test"]


def test_ptr_in_reverse_zone() -> None:
    auth = authority(
        {
            "/skydns/arpa/in-addr/10/0/0/1": '{"host":"a.skydns.test"}',
            "/skydns/arpa/in-addr/10/0/0/2/x": '{"host":"b.skydns.test"}',
            "/skydns/arpa/in-addr/10/0/0/2/y": '{"host":"c.skydns.test"}',
            "/skydns/arpa/in-addr/10/0/0/3": '{"host":"10.0.0.3"}',
        }
    )
    assert data(auth, "1.0.0.10.in-addr.arpa", T.PTR) == ["a.skydns.test"]
    assert data(auth, "2.0.0.10.in-addr.arpa", T.PTR) == ["b.skydns.test", "c.skydns.test"]
    res = ask(auth, "3.0.0.10.in-addr.arpa", T.PTR)
    assert res.rcode == NOERROR and not res.answer  # an IP host makes no PTR
    assert ask(auth, "9.0.0.10.in-addr.arpa", T.PTR).rcode == NXDOMAIN


def test_apex_soa_ns_and_addresses() -> None:
    auth = authority(
        BASE
        | {
            "/skydns/test/skydns/dns/ns/ns1": '{"host":"10.2.0.1"}',
            "/skydns/test/skydns/dns/ns/ns2": '{"host":"10.2.0.2"}',
            "/skydns/test/skydns/dns/apex/x": '{"host":"10.3.0.1"}',
        }
    )
    soa = ask(auth, "skydns.test", T.SOA)
    assert [r.rtype for r in soa.answer] == [T.SOA] and not soa.authority
    mname, rname, refresh, retry, expire, minimum = soa.answer[0].rdata
    assert (refresh, retry, expire) == (7200, 1800, 86400)
    assert mname == ("ns", "dns", "skydns", "test") and rname == ("hostmaster", "skydns", "test")
    assert minimum == 30
    ns = ask(auth, "skydns.test", T.NS)
    assert data(auth, "skydns.test", T.NS) == ["ns1.ns.dns.skydns.test", "ns2.ns.dns.skydns.test"]
    assert show(ns.additional) == [
        "ns1.ns.dns.skydns.test 1 10.2.0.1",
        "ns2.ns.dns.skydns.test 1 10.2.0.2",
    ]
    # The apex's addresses come from apex.dns only, never from a scan of the zone.
    assert data(auth, "skydns.test", T.A) == ["10.3.0.1"]
    # The nameservers also answer as ordinary names.
    assert data(auth, "ns.dns.skydns.test", T.A) == ["10.2.0.1", "10.2.0.2"]


def test_apex_without_records_is_nodata_never_nxdomain() -> None:
    auth = authority({})
    for qtype in (T.A, T.NS, T.MX, T.TXT):
        res = ask(auth, "example.org", qtype)
        assert res.rcode == NOERROR and not res.answer and res.authority[0].rtype == T.SOA


def test_soa_below_apex_is_nodata() -> None:
    auth = authority(BASE)
    res = ask(auth, "a.skydns.test", T.SOA)
    assert res.rcode == NOERROR and not res.answer and res.authority[0].rtype == T.SOA


def test_groups() -> None:
    auth = authority(
        {
            "/skydns/test/skydns/dom1/a": '{"host":"10.0.0.1","group":"g1"}',
            "/skydns/test/skydns/dom1/sub/b": '{"host":"10.0.0.2","group":"g2"}',
            "/skydns/test/skydns/dom2/a": '{"host":"10.0.0.3","group":"g1"}',
            "/skydns/test/skydns/dom2/sub/b": '{"host":"10.0.0.4"}',
            "/skydns/test/skydns/dom3/a": '{"host":"10.0.0.5","group":"g1"}',
            "/skydns/test/skydns/dom3/sub/b": '{"host":"10.0.0.6","group":"g1"}',
        }
    )
    assert data(auth, "dom1.skydns.test", T.A) == ["10.0.0.1"]
    assert data(auth, "dom2.skydns.test", T.A) == ["10.0.0.3", "10.0.0.4"]
    assert data(auth, "dom3.skydns.test", T.A) == ["10.0.0.5", "10.0.0.6"]


def test_other_types_and_transfers() -> None:
    auth = authority(BASE)
    res = ask(auth, "a.skydns.test", 257)  # CAA: not served, name exists
    assert res.rcode == NOERROR and not res.answer
    assert ask(auth, "nothing.skydns.test", 257).rcode == NXDOMAIN
    assert ask(auth, "skydns.test", T.AXFR).rcode == NOTIMP
    assert data(auth, "a.skydns.test", T.ANY) == ["10.0.0.1", "10.0.0.2", "2001:db8::1"]


def test_longest_zone_wins() -> None:
    index = Index()
    auth = Authority(index, [Zone(name_labels("test")), Zone(name_labels("skydns.test"))],
                     Settings())
    zone = auth.zone_of(name_labels("a.skydns.test"))
    assert zone is not None and zone.labels == ("skydns", "test")
    assert auth.zone_of(name_labels("a.example.com")) is None
    root = Authority(index, [Zone(())], Settings())
    assert root.zone_of(name_labels("anything.at.all")) == Zone(())


def test_dependencies_cover_what_was_read() -> None:
    auth = authority(BASE | {"/skydns/test/skydns/alias": '{"host":"a.skydns.test"}'})
    res = ask(auth, "alias.skydns.test", T.A)
    assert ("test", "skydns", "alias") in res.deps
    assert ("test", "skydns", "a") in res.deps


ALIASES = BASE | {
    "/skydns/test/skydns/alias": '{"host":"a.skydns.test"}',
    "/skydns/test/skydns/alias2": '{"host":"alias.skydns.test"}',
    "/skydns/test/skydns/dangling": '{"host":"gone.skydns.test"}',
    "/skydns/test/skydns/out": '{"host":"www.elsewhere.net"}',
    "/skydns/test/skydns/w/*": '{"host":"a.skydns.test"}',
    "/skydns/test/skydns/viawild": '{"host":"x.w.skydns.test"}',
    "/skydns/test/skydns/mx/m": '{"host":"mail.elsewhere.net","mail":true}',
    "/skydns/arpa/in-addr/10/0/0/7": '{"host":"a.skydns.test"}',
}


def test_cname_answers_every_type_the_name_does_not_define() -> None:
    auth = authority(ALIASES)
    for qtype in (T.MX, 257, 13, 35, 65280, T.NS, T.SOA, T.PTR):  # CAA HINFO NAPTR unknown
        res = ask(auth, "alias.skydns.test", qtype)
        assert res.rcode == NOERROR, qtype
        assert answers(auth, "alias.skydns.test", qtype) == ["alias.skydns.test 5 a.skydns.test"]
        # The chain ends at a.skydns.test, which has nothing of the type: its zone's SOA.
        assert [r.rtype for r in res.authority] == [T.SOA], qtype


def test_native_types_beat_the_cname() -> None:
    auth = authority(ALIASES)
    # SRV from a host record, MX from a mail record, PTR in a reverse zone.
    assert data(auth, "alias.skydns.test", T.SRV) == ["10 100 0 a.skydns.test"]
    assert data(auth, "mx.skydns.test", T.MX) == ["10 mail.elsewhere.net"]
    assert data(auth, "7.0.0.10.in-addr.arpa", T.PTR) == ["a.skydns.test"]
    # ANY at a CNAME name is the CNAME itself, not chased (RFC 1034 3.6.2, as knot).
    assert answers(auth, "alias2.skydns.test", T.ANY) == ["alias2.skydns.test 5 alias.skydns.test"]


def test_chain_through_wildcard_and_negative_answers_carry_the_last_soa() -> None:
    auth = authority(ALIASES)
    res = ask(auth, "viawild.skydns.test", T.A)
    assert [r.rtype for r in res.answer] == [T.CNAME, T.CNAME, T.A, T.A]  # chain order
    assert data(auth, "viawild.skydns.test", T.A) == [
        "10.0.0.1", "10.0.0.2", "a.skydns.test", "x.w.skydns.test"]
    nx = ask(auth, "dangling.skydns.test", T.TXT)
    assert nx.rcode == NXDOMAIN and [r.rtype for r in nx.authority] == [T.SOA]
    assert nx.authority[0].ttl == 30
    full = ask(auth, "alias2.skydns.test", T.AAAA)
    assert [r.rtype for r in full.answer] == [T.CNAME, T.CNAME, T.AAAA] and not full.authority
    nodata = ask(auth, "alias2.skydns.test", T.TXT)
    assert [r.rtype for r in nodata.answer] == [T.CNAME, T.CNAME]
    assert [r.rtype for r in nodata.authority] == [T.SOA]


def test_chain_leaving_our_zones_is_the_cnames_alone() -> None:
    res = ask(authority(ALIASES), "out.skydns.test", T.MX)
    assert res.rcode == NOERROR and not res.authority
    assert show(res.answer) == ["out.skydns.test 5 www.elsewhere.net"]
    assert res.external == ("www", "elsewhere", "net")


def test_ptr_for_a_forward_name_is_nodata() -> None:
    res = ask(authority(ALIASES), "a.skydns.test", T.PTR)
    assert res.rcode == NOERROR and not res.answer and res.authority[0].rtype == T.SOA


def test_mx_and_srv_at_the_apex_answer_the_records_below_it() -> None:
    auth = authority({
        "/skydns/org/example/mx": '{"host":"10.0.2.25","mail":true,"priority":10}',
        "/skydns/org/example/app": '{"host":"2001:db8::10"}',
        "/skydns/org/example/db/_tcp/_pg/x1": '{"host":"10.0.1.5","port":5432}',
        "/skydns/org/example/dns/ns/ns1": '{"host":"10.2.0.1","mail":true}',
    })
    res = ask(auth, "example.org", T.MX)
    assert show(res.answer) == ["example.org 15 10 mx.example.org"]
    assert show(res.additional) == ["mx.example.org 1 10.0.2.25"]
    assert ("org", "example") in res.deps  # any change in the zone may change it
    # SkyDNS: every host record below is a service (never the bookkeeping under dns.).
    assert data(auth, "example.org", T.SRV) == [
        "10 33 0 app.example.org", "10 33 0 mx.example.org",
        "10 33 5432 x1._pg._tcp.db.example.org"]
    empty = ask(auth, "skydns.test", T.MX)
    assert empty.rcode == NOERROR and not empty.answer and empty.authority[0].rtype == T.SOA


def test_a_name_host_in_a_reverse_zone_is_a_ptr_and_never_a_cname() -> None:
    auth = authority({"/skydns/arpa/in-addr/10/0/0/1": '{"host":"a.skydns.test"}',
                      "/skydns/test/skydns/a": '{"host":"10.0.0.1"}'})
    assert data(auth, "1.0.0.10.in-addr.arpa", T.PTR) == ["a.skydns.test"]
    for qtype in (T.A, T.AAAA, T.TXT, T.MX, T.CNAME):
        res = ask(auth, "1.0.0.10.in-addr.arpa", qtype)
        assert res.rcode == NOERROR and res.answer == []  # NODATA, not the CNAME
        assert [r.rtype for r in res.authority] == [T.SOA]
    assert data(auth, "1.0.0.10.in-addr.arpa", T.ANY) == ["a.skydns.test"]  # the PTR

