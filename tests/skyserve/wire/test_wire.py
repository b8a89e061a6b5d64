"""The wire side of the query path: parsing queries, EDNS, reply sizes, TXT strings.

Everything goes through ``Pipeline.handle`` in-process (no sockets, no etcd); malformed
packets are built by hand with struct, well-formed ones with dnspython.
"""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from skydns.record import decode_record, key_path, name_labels
from skyserve.index import Index
from skyserve.lookup import Settings, Zone
from skyserve.pipeline.chain import Pipeline
from skyserve.pipeline.context import Settings as PipelineSettings
from skyserve.wire import constants
from skyserve.wire import query as wire_query
from skyserve.wire import response as wire_response
from tests.support.pipeline_util import handle_twice

HEADER = struct.Struct("!HHHHHH")
QID = 0x1234
A, TXT, SRV, OPT = 1, 16, 33, 41
IN, CH = 1, 3
NAME = b"\x01a\x06skydns\x04test\x00"  # a.skydns.test.


# -- helpers ------------------------------------------------------------------------


def make_engine(records: dict[str, str], *, max_udp: int = 1232) -> Pipeline:
    idx = Index()
    for key, js in records.items():
        idx.put(key_path(key), decode_record(key, js))  # type: ignore[arg-type]
    e = Pipeline(PipelineSettings([Zone(name_labels("skydns.test"))],
                                  Settings(default_ttl=300, min_ttl=30), max_udp=max_udp,
                                  shuffle=False))
    e.load(idx, 42)
    return e


def a_records(name: str, count: int) -> dict[str, str]:
    """``count`` A records under ``<name>.skydns.test``, keys in address order."""
    return {
        f"/skydns/test/skydns/{name}/x{i:03d}": f'{{"host":"10.1.{i // 250}.{i % 250 + 1}"}}'
        for i in range(count)
    }


RECORDS: dict[str, str] = {
    "/skydns/test/skydns/a/x1": '{"host":"10.0.0.1"}',
    **a_records("n20", 20),
    **a_records("n30", 30),
    **a_records("n70", 70),
    **a_records("n80", 80),
    **a_records("big", 100),
}


@pytest.fixture
def e() -> Pipeline:
    return make_engine(RECORDS)


def packet(*, qid: int = QID, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0,
           ar: int = 0, body: bytes = NAME + struct.pack("!HH", A, IN)) -> bytes:
    return HEADER.pack(qid, flags, qd, an, ns, ar) + body


def opt(payload: int = 4096, ttl: int = 0, owner: bytes = b"\x00") -> bytes:
    return owner + struct.pack("!HHIH", OPT, payload, ttl, 0)


def raw_twice(e: Pipeline, data: bytes, tcp: bool = False) -> bytes | None:
    """Send a packet twice; both replies must agree (the second may come from cache)."""
    first = e.handle(data, tcp)
    second = e.handle(data, tcp)
    assert first == second
    return first


def query(name: str = "a.skydns.test", rdtype: str = "A", **kwargs: object) -> dns.message.Message:
    return dns.message.make_query(name, rdtype, **kwargs)  # type: ignore[arg-type]


def ask(e: Pipeline, q: dns.message.Message, tcp: bool = False) -> dns.message.Message:
    """Send ``q`` twice with different IDs; check each reply's ID, return the second.

    The two replies must be the same apart from the ID, whether or not the second one
    came from the cache.
    """
    return handle_twice(e, q, ids=(0x0101, 0xBEEF), tcp=tcp)[1]


def rcode_of(reply: bytes) -> int:
    return HEADER.unpack_from(reply)[1] & 0xF


# -- dropped packets ----------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 2, 11])
def test_packets_shorter_than_a_header_are_dropped(e: Pipeline, length: int) -> None:
    assert e.handle(packet()[:length], False) is None
    assert e.handle(packet()[:length], True) is None
    with pytest.raises(wire_query.Drop):
        wire_query.parse_query(packet()[:length])


def test_responses_are_dropped(e: Pipeline) -> None:
    data = packet(flags=0x8100)
    assert raw_twice(e, data) is None
    assert e.stats.queries["dropped"] == 2
    with pytest.raises(wire_query.Drop):
        wire_query.parse_query(data)


# -- FORMERR ------------------------------------------------------------------------


def assert_formerr(e: Pipeline, data: bytes) -> None:
    reply = raw_twice(e, data)
    assert reply is not None
    qid, flags, _, an, ns, ar = HEADER.unpack_from(reply)
    assert qid == QID
    assert flags & constants.QR
    assert rcode_of(reply) == dns.rcode.FORMERR
    assert (an, ns, ar) == (0, 0, 0)
    with pytest.raises(wire_query.FormatError):
        wire_query.parse_query(data)


@pytest.mark.parametrize("qdcount", [0, 2])
def test_question_count_other_than_one_is_formerr(e: Pipeline, qdcount: int) -> None:
    body = (NAME + struct.pack("!HH", A, IN)) * qdcount
    assert_formerr(e, packet(qd=qdcount, body=body))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="no-question"),
        pytest.param(b"\x01a\x06sky", id="name-cut-short"),
        pytest.param(b"\x01a\x06skydns\x04test", id="no-root-label"),
        pytest.param(b"\x40" + b"a" * 64 + b"\x00" + struct.pack("!HH", A, IN), id="label-64"),
        pytest.param(b"\x01a\xc0\x0c" + struct.pack("!HH", A, IN), id="compression-pointer"),
        pytest.param(b"\xc0\x0c" + struct.pack("!HH", A, IN), id="pointer-only"),
        pytest.param((b"\x3f" + b"a" * 63) * 4 + b"\x00" + struct.pack("!HH", A, IN),
                     id="name-257-octets"),
        pytest.param(NAME, id="no-qtype"),
        pytest.param(NAME + b"\x00\x01", id="no-qclass"),
        pytest.param(NAME + b"\x00\x01\x00", id="qclass-cut-short"),
    ],
)
def test_malformed_question_is_formerr(e: Pipeline, body: bytes) -> None:
    assert_formerr(e, packet(body=body))


def test_name_of_exactly_255_octets_is_accepted(e: Pipeline) -> None:
    name = (b"\x3f" + b"a" * 63) * 3 + b"\x3d" + b"b" * 61 + b"\x00"
    assert len(name) == 255
    reply = raw_twice(e, packet(body=name + struct.pack("!HH", A, IN)))
    assert reply is not None
    assert rcode_of(reply) == dns.rcode.REFUSED  # well-formed, just not ours


def test_two_opt_records_are_formerr(e: Pipeline) -> None:
    assert_formerr(e, packet(ar=2, body=NAME + struct.pack("!HH", A, IN) + opt() + opt()))


def test_opt_with_a_non_root_owner_is_formerr(e: Pipeline) -> None:
    assert_formerr(e, packet(ar=1, body=NAME + struct.pack("!HH", A, IN) + opt(owner=NAME)))


def test_truncated_additional_record_is_formerr(e: Pipeline) -> None:
    assert_formerr(e, packet(ar=1, body=NAME + struct.pack("!HH", A, IN) + opt()[:-1]))


# -- opcodes and EDNS versions ------------------------------------------------------


@pytest.mark.parametrize("opcode", [dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.NOTIFY,
                                    dns.opcode.UPDATE])
def test_other_opcodes_get_notimp_with_the_question(e: Pipeline, opcode: int) -> None:
    # Checked on the raw bytes: dnspython reads an UPDATE reply's question as a zone.
    question = NAME + struct.pack("!HH", A, IN)
    reply = raw_twice(e, packet(flags=0x0100 | opcode << 11, body=question))
    assert reply is not None
    qid, flags, qd, an, ns, ar = HEADER.unpack_from(reply)
    assert qid == QID
    assert flags & constants.QR
    assert (flags & constants.OPCODE) >> 11 == opcode
    assert not flags & constants.AA
    assert flags & constants.RD
    assert rcode_of(reply) == dns.rcode.NOTIMP
    assert (qd, an, ns, ar) == (1, 0, 0, 0)
    assert reply[HEADER.size :] == question


def test_notimp_reply_to_an_edns_query_carries_an_opt(e: Pipeline) -> None:
    # RFC 6891 section 7: a responder MUST include an OPT in its reply to a query with one.
    q = query(use_edns=0, payload=4096)
    q.set_opcode(dns.opcode.NOTIFY)
    reply = ask(e, q)
    assert reply.rcode() == dns.rcode.NOTIMP
    assert reply.edns == 0
    assert reply.payload == 1232


def test_edns_version_1_gets_badvers_with_an_opt(e: Pipeline) -> None:
    q = query(use_edns=1, payload=4096)
    reply = ask(e, q)
    assert reply.rcode() == dns.rcode.BADVERS
    assert reply.edns == 0  # we speak version 0
    assert reply.payload == 1232
    assert reply.flags & dns.flags.QR
    assert reply.question == q.question
    assert not reply.answer


# -- EDNS in replies ----------------------------------------------------------------


def test_no_opt_in_reply_to_a_query_without_one(e: Pipeline) -> None:
    reply = ask(e, query(use_edns=False))
    assert reply.edns == -1
    assert reply.opt is None
    assert not reply.additional
    assert [rrset.to_text() for rrset in reply.answer] == ["a.skydns.test. 300 IN A 10.0.0.1"]


@pytest.mark.parametrize("do", [False, True])
@pytest.mark.parametrize("payload", [512, 4096])
def test_opt_in_reply_advertises_max_udp_and_copies_do(e: Pipeline, do: bool,
                                                        payload: int) -> None:
    reply = ask(e, query(use_edns=0, payload=payload, want_dnssec=do))
    assert reply.edns == 0
    assert reply.payload == 1232
    assert bool(reply.ednsflags & dns.flags.DO) is do
    assert reply.rcode() == dns.rcode.NOERROR
    assert len(reply.answer) == 1


def test_opt_in_reply_advertises_the_configured_max_udp() -> None:
    reply = ask(make_engine(RECORDS, max_udp=1400), query(use_edns=0, payload=4096))
    assert reply.payload == 1400


def test_opt_in_negative_and_refused_replies(e: Pipeline) -> None:
    for name, rcode in (("nx.skydns.test", dns.rcode.NXDOMAIN), ("example.com", dns.rcode.REFUSED)):
        reply = ask(e, query(name, use_edns=0, want_dnssec=True))
        assert reply.rcode() == rcode
        assert reply.edns == 0 and reply.payload == 1232
        assert reply.ednsflags & dns.flags.DO


# -- reply size and truncation ------------------------------------------------------


def sized(
    e: Pipeline, name: str, *, tcp: bool = False, **kwargs: object
) -> tuple[bytes, dns.message.Message]:
    """Ask for ``<name>.skydns.test`` (twice, via ``ask``), return the raw and parsed reply."""
    q = query(f"{name}.skydns.test", **kwargs)
    ask(e, q, tcp)
    data = e.handle(q.to_wire(), tcp)
    assert data is not None
    return data, dns.message.from_wire(data)


def answer_count(reply: dns.message.Message) -> int:
    return sum(len(rrset) for rrset in reply.answer)


def assert_fits(reply: dns.message.Message, count: int) -> None:
    assert not reply.flags & dns.flags.TC
    assert answer_count(reply) == count


def assert_truncated(reply: dns.message.Message) -> None:
    assert reply.flags & dns.flags.TC
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.answer == []  # the one A RRset does not fit: left out whole
    assert reply.authority == []


def test_without_edns_udp_replies_stay_within_512(e: Pipeline) -> None:
    data, reply = sized(e, "n20")
    assert_fits(reply, 20)
    assert len(data) <= 512
    data, reply = sized(e, "n30")  # about 513 bytes
    assert_truncated(reply)
    assert len(data) <= 512


def test_edns_4096_is_capped_at_max_udp(e: Pipeline) -> None:
    data, reply = sized(e, "n70", use_edns=0, payload=4096)
    assert_fits(reply, 70)
    assert 1024 < len(data) <= 1232
    data, reply = sized(e, "n80", use_edns=0, payload=4096)  # about 1300 bytes
    assert_truncated(reply)
    assert len(data) <= 1232
    assert reply.payload == 1232


def test_edns_600_is_honoured(e: Pipeline) -> None:
    data, reply = sized(e, "n30", use_edns=0, payload=600)
    assert_fits(reply, 30)
    assert 512 < len(data) <= 600
    data, reply = sized(e, "n70", use_edns=0, payload=600)
    assert_truncated(reply)
    assert len(data) <= 600


@pytest.mark.parametrize("payload", [0, 100, 511])
def test_edns_payload_below_512_counts_as_512(e: Pipeline, payload: int) -> None:
    data, reply = sized(e, "n20", use_edns=0, payload=payload)
    assert_fits(reply, 20)
    data, reply = sized(e, "n30", use_edns=0, payload=payload)
    assert_truncated(reply)
    assert len(data) <= 512


@pytest.mark.parametrize("edns", [{}, {"use_edns": 0, "payload": 4096}])
def test_big_rrset_truncates_on_udp_and_comes_whole_over_tcp(e: Pipeline,
                                                             edns: dict[str, object]) -> None:
    data, reply = sized(e, "big", **edns)
    assert_truncated(reply)
    assert len(data) <= (1232 if edns else 512)
    data, reply = sized(e, "big", tcp=True, **edns)
    assert_fits(reply, 100)
    assert len(data) > 1232


def test_udp_truncation_keeps_only_whole_rrsets() -> None:
    records = {
        **{f"/skydns/test/skydns/mix/a{i:02d}": f'{{"host":"10.2.0.{i + 1}"}}'
           for i in range(20)},
        **{f"/skydns/test/skydns/mix/b{i:02d}": f'{{"host":"fd00::{i + 1:x}"}}'
           for i in range(20)},
    }
    e = make_engine(records)
    data, reply = sized(e, "mix", rdtype="ANY")
    assert reply.flags & dns.flags.TC
    assert len(data) <= 512
    assert [(rrset.rdtype, len(rrset)) for rrset in reply.answer] == [(dns.rdatatype.A, 20)]
    _, reply = sized(e, "mix", rdtype="ANY", use_edns=0, payload=4096)
    assert not reply.flags & dns.flags.TC
    assert [(rrset.rdtype, len(rrset)) for rrset in reply.answer] == [
        (dns.rdatatype.A, 20), (dns.rdatatype.AAAA, 20)]


def test_glue_that_does_not_fit_is_dropped_without_tc() -> None:
    label = "target-with-a-rather-long-name-to-fill-the-reply-up"
    e = make_engine({
        f"/skydns/test/skydns/svc/{label}{i}": f'{{"host":"10.3.0.{i + 1}","port":80}}'
        for i in range(5)
    })
    data, reply = sized(e, "svc", rdtype="SRV")
    assert not reply.flags & dns.flags.TC
    assert len(data) <= 512
    assert answer_count(reply) == 5
    glue = sum(len(rrset) for rrset in reply.additional)
    assert 0 < glue < 5
    _, reply = sized(e, "svc", rdtype="SRV", tcp=True)
    assert not reply.flags & dns.flags.TC
    assert answer_count(reply) == 5
    assert sum(len(rrset) for rrset in reply.additional) == 5


# -- TXT character-strings ----------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "split"),
    [(1, [1]), (255, [255]), (256, [255, 1]), (510, [255, 255]), (600, [255, 255, 90])],
)
def test_long_txt_is_split_into_255_byte_strings(length: int, split: list[int]) -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(length))
    e = make_engine({"/skydns/test/skydns/t/x": f'{{"text":"{text}"}}'})
    reply = ask(e, query("t.skydns.test", "TXT", use_edns=0, payload=1232))
    [rrset] = reply.answer
    [rdata] = list(rrset)
    assert [len(s) for s in rdata.strings] == split
    assert b"".join(rdata.strings) == text.encode()


# -- upstream replies -----------------------------------------------------------------

GLUE = b"\xc0\x0c" + struct.pack("!HHIH", A, IN, 300, 4) + bytes([192, 0, 2, 9])


def upstream_reply(extra: bytes = b"", extra_in: int = 2) -> bytes:
    """An upstream's EDNS reply for www.example.com A (one answer), with ``extra`` records
    appended to section ``extra_in`` (0 answer, 1 authority, 2 additional) after the OPT."""
    q = dns.message.make_query("www.example.com", "A", use_edns=0, payload=1232)
    msg = dns.message.make_response(q)
    msg.answer.append(dns.rrset.from_text("www.example.com.", 300, "IN", "A", "192.0.2.1"))
    data = bytearray(msg.to_wire())
    if extra:
        count_at = 6 + 2 * extra_in
        struct.pack_into("!H", data, count_at, struct.unpack_from("!H", data, count_at)[0] + 1)
        data += extra
    return bytes(data)


def test_upstream_reply_is_parsed_with_its_opt_apart() -> None:
    resp = wire_response.parse_response(upstream_reply())
    assert resp.counts == (1, 0, 0)
    assert [s.rtype for s in resp.spans] == [A]
    assert resp.opt is not None and resp.opt.rtype == OPT


@pytest.mark.parametrize("extra_in", [0, 2])
def test_upstream_reply_with_a_second_or_misplaced_opt_is_malformed(extra_in: int) -> None:
    with pytest.raises(ValueError, match="OPT"):
        wire_response.parse_response(upstream_reply(opt(), extra_in))


def test_relay_drops_records_after_the_opt_and_counts_what_is_left() -> None:
    resp = wire_response.parse_response(upstream_reply(GLUE))
    client = wire_query.parse_query(query("WWW.example.COM", use_edns=0, payload=4096).to_wire())
    data = wire_response.relay(resp, client, limit=1232, max_udp=1232)
    reply = dns.message.from_wire(data)
    assert reply.id == client.id
    assert str(reply.question[0].name) == "WWW.example.COM."
    assert [str(r) for rrset in reply.answer for r in rrset] == ["192.0.2.1"]
    assert reply.additional == []
    assert reply.edns == 0 and reply.payload == 1232
    assert HEADER.unpack_from(data)[2:] == (1, 1, 0, 1)  # the OPT is ours, the glue gone


def test_relay_of_a_reply_too_big_for_the_client_is_cut_to_the_question() -> None:
    resp = wire_response.parse_response(upstream_reply())
    client = wire_query.parse_query(query("www.example.com").to_wire())  # no EDNS: 512 bytes
    data = wire_response.relay(resp, client, limit=40, max_udp=1232)
    reply = dns.message.from_wire(data)
    assert reply.flags & dns.flags.TC
    assert reply.answer == [] and reply.edns == -1
    assert HEADER.unpack_from(data)[2:] == (1, 0, 0, 0)
