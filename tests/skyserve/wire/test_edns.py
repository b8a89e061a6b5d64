"""The header and EDNS as RFC 8906 tests them: NOTIMP before anything else, Extended DNS
Errors (RFC 8914) on the errors we make, NSID (RFC 5001). In-process, no sockets."""

from __future__ import annotations

import struct

import dns.edns
import dns.message
import dns.opcode
import dns.rcode
import pytest

from skydns.record import decode_record, key_path, name_labels
from skyserve.index import Index
from skyserve.lookup import Settings, Zone
from skyserve.pipeline.chain import Pipeline
from skyserve.pipeline.context import Settings as PipelineSettings
from tests.support.pipeline_util import handle_twice

HEADER = struct.Struct("!HHHHHH")
EDE = dns.edns.OptionType.EDE
NSID = dns.edns.OptionType.NSID


def engine(*, nsid: bytes = b"", loaded: bool = True) -> Pipeline:
    e = Pipeline(PipelineSettings([Zone(name_labels("skydns.test"))], Settings(), nsid=nsid))
    if loaded:
        idx = Index()
        key = "/skydns/test/skydns/a"
        idx.put(key_path(key) or (), decode_record(key, '{"host":"10.0.0.1"}'))
        e.load(idx, 3)
    return e


def ask(e: Pipeline, name: str, rdtype: str = "A", **kw: object) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    return handle_twice(e, q, ids=(1, 2))[1]


def edes(reply: dns.message.Message) -> list[tuple[int, str | None]]:
    return [(o.code, o.text) for o in reply.options if o.otype == EDE]  # type: ignore[attr-defined]


@pytest.mark.parametrize("opcode", [3, 15])
@pytest.mark.parametrize("qdcount", [0, 2])
def test_unknown_opcode_is_notimp_even_without_one_question(opcode: int, qdcount: int) -> None:
    # RFC 8906 8.1.4: the opcode is judged before the question count (was FORMERR).
    question = b"\x01a\x06skydns\x04test\x00\x00\x01\x00\x01" * qdcount
    data = HEADER.pack(7, opcode << 11, qdcount, 0, 0, 0) + question
    reply = engine().handle(data, False)
    assert reply is not None
    qid, flags, qd, an, ns, ar = HEADER.unpack_from(reply)
    assert qid == 7 and flags & 0x8000 and (flags >> 11) & 0xF == opcode
    assert flags & 0xF == dns.rcode.NOTIMP
    assert (qd, an, ns, ar) == (0, 0, 0, 0)


def test_extended_errors_on_the_errors_we_make() -> None:
    assert edes(ask(engine(loaded=False), "a.skydns.test", use_edns=0)) == [(14, None)]
    assert edes(ask(engine(), "example.com", use_edns=0)) == [(20, None)]
    q = dns.message.make_query("a.skydns.test", "A", use_edns=0)
    q.set_opcode(dns.opcode.NOTIFY)
    [(code, text)] = edes(handle_twice(engine(), q, ids=(1, 2))[1])
    assert code == 0 and text and "opcode 4" in text
    [(code, text)] = edes(ask(engine(), "skydns.test", "AXFR", use_edns=0))
    assert code == 0 and text
    # Answers carry none; clients without EDNS get no OPT at all.
    assert edes(ask(engine(), "a.skydns.test", use_edns=0)) == []
    assert ask(engine(loaded=False), "a.skydns.test").opt is None


def test_nsid_only_to_queries_that_ask() -> None:
    e = engine(nsid=b"skyserve-0")
    asked = ask(e, "a.skydns.test", use_edns=0, options=[dns.edns.GenericOption(NSID, b"")])
    assert [(o.otype, o.to_wire()) for o in asked.options] == [(NSID, b"skyserve-0")]
    assert asked.answer  # still the answer, and the cached copy carries it too
    assert ask(e, "a.skydns.test", use_edns=0).options == ()
    refused = ask(e, "example.com", use_edns=0, options=[dns.edns.GenericOption(NSID, b"")])
    assert sorted(o.otype for o in refused.options) == [NSID, EDE]
    # Not configured: nothing, even when asked.
    plain = ask(engine(), "a.skydns.test", use_edns=0,
                options=[dns.edns.GenericOption(NSID, b"")])
    assert plain.options == ()


def test_a_malformed_option_list_is_formerr() -> None:
    q = dns.message.make_query("a.skydns.test", "A", use_edns=0)
    data = bytearray(q.to_wire())
    data[-2:] = b"\x00\x03"  # OPT rdlength 3: not even one option header
    data += b"\x00\x03\x00"
    reply = engine().handle(bytes(data), False)
    assert reply is not None and reply[3] & 0xF == dns.rcode.FORMERR
