"""The guard stages in-process: rate limiting, ACLs, cookies, keepalive and minimal ANY,
through ``Pipeline.handle`` with real dnspython messages, and the chain with none of them.

Every query of a test carries a client address, as the UDP transport gives it: each
127.x.y.0/24 is a different client prefix.
"""

from __future__ import annotations

import ipaddress
import struct
import time

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from skydns.record import Record, name_labels
from skyserve.access import parse_rule
from skyserve.cookiejar import Jar
from skyserve.index import Index
from skyserve.lookup import Zone
from skyserve.pipeline.chain import Pipeline
from skyserve.pipeline.context import Settings
from skyserve.ratelimit import RrlSettings

ZONE = Zone(name_labels("skydns.test"))
SECRET = bytes(range(16))
OTHER_SECRET = bytes(range(16, 32))


def records() -> Index:
    index = Index()
    for key, value in (("test/skydns/fine", {"host": "10.0.0.2"}),
                       ("test/skydns/wild/*", {"host": "10.0.0.3"}),
                       ("test/skydns/any", {"host": "10.0.0.4"}),
                       ("test/skydns/any/t", {"text": "x" * 200})):
        path = tuple(key.split("/"))
        host = value.get("host")
        index.put(path, Record("/skydns/" + key, host=host or "", text=value.get("text", ""),
                               address=ipaddress.ip_address(host).packed if host else None))
    return index


def pipeline(**guards: object) -> Pipeline:
    p = Pipeline(Settings([ZONE], **guards))  # type: ignore[arg-type]
    p.load(records(), 7)
    return p


def ask(p: Pipeline, name: str, client: str = "127.1.1.1", rdtype: str = "A", tcp: bool = False,
        **kw: object) -> dns.message.Message | None:
    query = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    reply = p.handle(query.to_wire(), tcp, (client, 5300))
    return None if reply is None else dns.message.from_wire(reply)


def outcome(reply: dns.message.Message | None) -> str:
    if reply is None:
        return "dropped"
    return "slipped" if reply.flags & dns.flags.TC and not reply.answer else "answered"


def tallies(replies: list[dns.message.Message | None]) -> dict[str, int]:
    out = {"answered": 0, "slipped": 0, "dropped": 0}
    for r in replies:
        out[outcome(r)] += 1
    return out


# -- the chain with no guard ----------------------------------------------------------


def test_with_no_guard_the_cache_is_asked_first_on_raw_bytes() -> None:
    p = pipeline()
    assert p._hit == p.answers.hit
    guarded = pipeline(rrl=RrlSettings(10))
    assert guarded._hit != guarded.answers.hit


# -- response rate limiting ------------------------------------------------------------


def test_rrl_answers_about_the_rate_then_slips_half_and_drops_half() -> None:
    p = pipeline(rrl=RrlSettings(10, slip=2))
    got = tallies([ask(p, "fine.skydns.test") for _ in range(100)])
    # A burst of the bucket's size, then slip 2: every second limited reply is truncated.
    assert got == {"answered": 10, "slipped": 45, "dropped": 45}
    guard = p.stats.guard.rrl
    assert (guard["limited"], guard["slipped"], guard["dropped"]) == (90, 45, 45)


def test_rrl_limits_answers_served_from_the_answer_cache() -> None:
    p = pipeline(rrl=RrlSettings(5, slip=0))
    replies = [ask(p, "fine.skydns.test") for _ in range(20)]
    assert p.stats.answer_hits >= 15  # the same query bytes: cache hits
    assert tallies(replies) == {"answered": 5, "slipped": 0, "dropped": 15}


def test_rrl_counts_each_client_prefix_apart() -> None:
    p = pipeline(rrl=RrlSettings(5, slip=0))
    for _ in range(50):
        ask(p, "fine.skydns.test", client="127.1.1.1")
    assert outcome(ask(p, "fine.skydns.test", client="127.1.1.200")) == "dropped"  # same /24
    assert outcome(ask(p, "fine.skydns.test", client="127.1.2.1")) == "answered"


def test_rrl_puts_random_nxdomain_and_wildcard_names_in_one_bucket() -> None:
    p = pipeline(rrl=RrlSettings(5, slip=0))
    nx = [ask(p, f"r{i}.nope.skydns.test") for i in range(30)]
    assert {r.rcode() for r in nx if r is not None} == {dns.rcode.NXDOMAIN}
    assert tallies(nx)["answered"] == 5
    wild = [ask(p, f"r{i}.wild.skydns.test") for i in range(30)]
    assert all(r is None or r.answer for r in wild)
    assert tallies(wild)["answered"] == 5
    # Another name is another bucket: answers are limited per name.
    assert outcome(ask(p, "fine.skydns.test")) == "answered"


def test_rrl_exempts_tcp_and_log_only_sends_everything() -> None:
    p = pipeline(rrl=RrlSettings(5, slip=0))
    assert tallies([ask(p, "fine.skydns.test", tcp=True) for _ in range(30)])["answered"] == 30
    logged = pipeline(rrl=RrlSettings(5, slip=0, log_only=True))
    assert tallies([ask(logged, "fine.skydns.test") for _ in range(30)])["answered"] == 30
    assert logged.stats.guard.rrl["limited"] == 25


def test_rrl_bucket_refills_at_the_rate() -> None:
    p = pipeline(rrl=RrlSettings(50, slip=0))
    start = time.monotonic()
    answered = tallies([ask(p, "fine.skydns.test") for _ in range(100)])["answered"]
    assert 50 <= answered <= 50 + (time.monotonic() - start) * 50  # the burst, plus earnings
    time.sleep(0.2)  # 10 credits earned; limited responses spent none
    assert tallies([ask(p, "fine.skydns.test") for _ in range(5)])["answered"] == 5
    burst = pipeline(rrl=RrlSettings(10, slip=0, window=3.0))
    assert tallies([ask(burst, "fine.skydns.test") for _ in range(100)])["answered"] == 30


def test_rrl_table_is_bounded() -> None:
    p = pipeline(rrl=RrlSettings(5, table_size=100))
    for i in range(300):
        ask(p, "fine.skydns.test", client=f"127.{i // 256}.{i % 256}.1")
    rrl = next(s for s in _stages(p) if type(s).__name__ == "RateLimit")
    assert len(rrl.buckets) == 100


def _stages(p: Pipeline) -> list[object]:
    """The stage objects after parse, outermost first."""
    out, handler = [], p._first.__self__.next  # type: ignore[attr-defined]
    while hasattr(handler, "__self__"):
        out.append(handler.__self__)
        handler = getattr(handler.__self__, "next", None)
    return out


# -- ACLs ------------------------------------------------------------------------------


def test_acl_block_is_refused_with_ede_18_and_drop_sends_nothing() -> None:
    p = pipeline(acl=(parse_rule("skydns.test=block:127.9.0.0/16"),
                      parse_rule("skydns.test=drop:127.8.0.0/16")))
    blocked = ask(p, "fine.skydns.test", client="127.9.3.4", use_edns=0)
    assert blocked is not None and blocked.rcode() == dns.rcode.REFUSED
    assert [(o.otype, o.code) for o in blocked.options] == [(dns.edns.EDE, 18)]
    assert ask(p, "fine.skydns.test", client="127.8.3.4") is None
    fine = ask(p, "fine.skydns.test", client="127.1.1.1")
    assert fine is not None and fine.answer
    assert p.stats.guard.acl == {("skydns.test.", "block"): 1, ("skydns.test.", "drop"): 1}


def test_acl_allow_lets_in_only_what_it_names_in_its_zone() -> None:
    p = pipeline(acl=(parse_rule("any.skydns.test=allow:127.5.0.0/16,::1/128"),))
    inside = ask(p, "any.skydns.test", client="127.5.0.9")
    assert inside is not None and inside.answer
    outside = ask(p, "any.skydns.test", client="127.6.0.9")
    assert outside is not None and outside.rcode() == dns.rcode.REFUSED
    other = ask(p, "fine.skydns.test", client="127.6.0.9")  # not in the ACL's zone
    assert other is not None and other.answer


# -- cookies ---------------------------------------------------------------------------


def cookie_query(p: Pipeline, cookie: bytes, client: str = "127.1.1.1",
                 tcp: bool = False) -> dns.message.Message | None:
    return ask(p, "fine.skydns.test", client=client, tcp=tcp, use_edns=0,
               options=[dns.edns.GenericOption(dns.edns.COOKIE, cookie)])


def returned_cookie(reply: dns.message.Message | None) -> bytes:
    assert reply is not None
    [option] = [o for o in reply.options if o.otype == dns.edns.COOKIE]
    return option.to_wire()


def test_a_client_cookie_gets_a_server_cookie_that_is_then_accepted() -> None:
    p = pipeline(cookies=Jar((SECRET,)))
    first = returned_cookie(cookie_query(p, b"clientck"))
    assert first[:8] == b"clientck" and len(first) == 24 and first[8] == 1
    second = cookie_query(p, first)
    assert second is not None and second.answer
    assert p.stats.guard.cookies["valid"] == 1
    # The server cookie is bound to the client address: elsewhere it is not ours.
    cookie_query(p, first, client="127.7.7.7")
    assert p.stats.guard.cookies["fresh"] == 1


def test_malformed_cookies_are_formerr() -> None:
    p = pipeline(cookies=Jar((SECRET,)))
    for size in (3, 9, 15, 41):
        reply = cookie_query(p, b"x" * size)
        assert reply is not None and reply.rcode() == dns.rcode.FORMERR, size


def test_old_and_foreign_server_cookies_are_replaced() -> None:
    p = pipeline(cookies=Jar((SECRET,)))
    address = ipaddress.ip_address("127.1.1.1").packed
    old = Jar((SECRET,)).mint(b"clientck", address, int(time.time()) - 3601)
    fresh = returned_cookie(cookie_query(p, b"clientck" + old))
    assert fresh[8:] != old and struct.unpack("!I", fresh[12:16])[0] >= int(time.time()) - 1
    foreign = Jar((OTHER_SECRET,)).mint(b"clientck", address, int(time.time()))
    assert returned_cookie(cookie_query(p, b"clientck" + foreign))[8:] != foreign
    assert p.stats.guard.cookies["fresh"] == 2 and not p.stats.guard.cookies["valid"]


def test_the_previous_secret_is_still_accepted_after_a_rotation() -> None:
    address = ipaddress.ip_address("127.1.1.1").packed
    minted = b"clientck" + Jar((SECRET,)).mint(b"clientck", address, int(time.time()))
    rotated = pipeline(cookies=Jar((OTHER_SECRET, SECRET)))
    cookie_query(rotated, minted)
    assert rotated.stats.guard.cookies["valid"] == 1


def test_required_cookies_get_badcookie_over_udp_but_not_over_tcp() -> None:
    p = pipeline(cookies=Jar((SECRET,), require=True))
    bad = cookie_query(p, b"clientck")
    assert bad is not None and bad.rcode() == dns.rcode.BADCOOKIE and not bad.answer
    good = cookie_query(p, returned_cookie(bad))
    assert good is not None and good.rcode() == dns.rcode.NOERROR and good.answer
    over_tcp = cookie_query(p, b"clientck", tcp=True)
    assert over_tcp is not None and over_tcp.answer


def test_a_valid_cookie_is_not_rate_limited() -> None:
    p = pipeline(cookies=Jar((SECRET,)), rrl=RrlSettings(5, slip=0))
    cookie = returned_cookie(cookie_query(p, b"clientck"))
    replies = [cookie_query(p, cookie) for _ in range(30)]
    assert tallies(replies)["answered"] == 30
    plain = [cookie_query(p, b"clientck") for _ in range(30)]  # no server cookie: limited
    assert tallies(plain)["dropped"] > 20


# -- keepalive and ANY -----------------------------------------------------------------


def test_tcp_keepalive_is_answered_over_tcp_only() -> None:
    p = pipeline(tcp_keepalive=7.5)
    option = [dns.edns.GenericOption(dns.edns.KEEPALIVE, b"")]
    over_tcp = ask(p, "fine.skydns.test", tcp=True, use_edns=0, options=option)
    assert over_tcp is not None
    [got] = [o for o in over_tcp.options if o.otype == dns.edns.KEEPALIVE]
    assert got.to_wire() == struct.pack("!H", 75)
    over_udp = ask(p, "fine.skydns.test", use_edns=0, options=option)
    assert over_udp is not None and not over_udp.options


def test_minimal_any_over_udp_is_one_rrset_and_tcp_gets_all() -> None:
    p = pipeline(minimal_any=True)
    udp = ask(p, "any.skydns.test", rdtype="ANY")
    tcp = ask(p, "any.skydns.test", rdtype="ANY", tcp=True)
    assert udp is not None and tcp is not None
    assert [r.rdtype for r in udp.answer] == [dns.rdatatype.A]
    assert sorted(r.rdtype for r in tcp.answer) == [dns.rdatatype.A, dns.rdatatype.TXT]
    plain = ask(pipeline(), "any.skydns.test", rdtype="ANY")
    assert plain is not None and len(plain.answer) == 2
