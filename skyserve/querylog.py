"""The query log: one line per answered query on stdout, off unless asked for.

Classes follow CoreDNS's ``log`` plugin: ``success`` (NOERROR with answers), ``denial``
(NXDOMAIN, or NOERROR with no answer), ``error`` (SERVFAIL, NOTIMP, REFUSED, FORMERR and
other failures), ``all``. Text lines look like CoreDNS's common log format::

    127.0.0.1:52234 - 3 "A IN example.org. udp 29 false 512" NOERROR qr,aa,rd 45 0.000123s

JSON lines carry the same fields by name. Names are never passed through %-formatting.
"""

from __future__ import annotations

import json
import struct
import sys
from typing import Any, TextIO

from .wire.constants import MIN_UDP, qtype_name, rcode_name
from .wire.query import Drop, FormatError, name_text, parse_query, question

CLASSES = ("all", "denial", "error", "success")
FLAG_NAMES = ((0x8000, "qr"), (0x0400, "aa"), (0x0200, "tc"), (0x0100, "rd"), (0x0080, "ra"),
              (0x0020, "ad"), (0x0010, "cd"))


class QueryLog:
    def __init__(self, classes: set[str], fmt: str = "text", stream: TextIO | None = None) -> None:
        self.classes = classes
        self.json = fmt == "json"
        self.stream = stream or sys.stdout

    def log(self, query: bytes, reply: bytes, peer: Any, tcp: bool, duration: float) -> None:
        if len(reply) < 12:
            return
        flags, ancount = struct.unpack_from("!H2xH", reply, 2)
        rcode = flags & 0xF
        kind = "success" if rcode == 0 and ancount else "denial" if rcode in (0, 3) else "error"
        if "all" not in self.classes and kind not in self.classes:
            return
        found = question(reply)
        name, qtype, qclass = (name_text(found[0]), found[1], found[2]) if found else ("-", 0, 0)
        do, bufsize = _edns(query)
        if not isinstance(peer, tuple) and hasattr(peer, "get_extra_info"):
            peer = peer.get_extra_info("peername")  # a TCP connection
        host, port = (peer[0], peer[1]) if isinstance(peer, tuple) else ("-", 0)
        fields: dict[str, Any] = {
            "client_ip": host, "client_port": port, "id": int.from_bytes(reply[:2], "big"),
            "type": qtype_name(qtype) if qtype_name(qtype) != "other" else str(qtype),
            "class": "IN" if qclass == 1 else str(qclass), "name": name,
            "proto": "tcp" if tcp else "udp", "size": len(query), "do": do,
            "bufsize": bufsize, "rcode": rcode_name(rcode),
            "flags": ",".join(n for bit, n in FLAG_NAMES if flags & bit),
            "rsize": len(reply), "duration_seconds": round(duration, 6),
        }
        if self.json:
            line = json.dumps(fields, separators=(",", ":"))
        else:
            line = " ".join((
                f"{host}:{port} - {fields['id']}",
                '"' + " ".join(str(fields[k]) for k in ("type", "class", "name", "proto", "size"))
                + f' {str(fields["do"]).lower()} {fields["bufsize"]}"',
                fields["rcode"], fields["flags"], str(len(reply)), f"{duration:.6f}s",
            ))
        self.stream.write(line + "\n")
        self.stream.flush()


def _edns(query: bytes) -> tuple[bool, int]:
    """The query's DO bit and advertised UDP size (512 without EDNS, or if it is bad)."""
    try:
        parsed = parse_query(query)
    except (Drop, FormatError):
        return False, MIN_UDP
    return parsed.do, parsed.udp_size if parsed.edns else MIN_UDP
