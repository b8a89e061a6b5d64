"""After parse, only with ``--transfer``: AXFR and IXFR of our zones to secondaries (``xfr``).

Contract: takes every AXFR and IXFR query; passes everything else on. In order:

* a TSIG that does not verify: NOTAUTH with the TSIG error, unsigned (RFC 8945 5.2); a
  time outside the fudge: NOTAUTH, BADTIME, signed;
* a name that is not the apex of one of our zones: NOTAUTH (EDE 20);
* a zone without ``--transfer``, a source outside its prefixes, or no TSIG from one of its
  ``--transfer-key`` keys when it names some: REFUSED (EDE 18 Prohibited);
* before the first etcd load: SERVFAIL (EDE 14); AXFR over UDP: REFUSED (EDE 21); IXFR
  over UDP: the current SOA alone, so the client asks again over TCP (RFC 1995 section 2);
* a signed SOA query (a secondary checking our serial) is verified and its answer
  signed, since a secondary with a key for us expects that;
* over TCP: the transfer, sent later as several messages through ``Request.send`` (the
  one place a stage sends more than one reply), all signed when the request was; the
  connection is busy meanwhile (``transport.busy``), so the TCP idle timeout does not end
  it while a large zone is still being built.

The reply to a signed request is signed; every transfer is counted by type and result.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

from ..lookup import Zone
from ..transport import busy
from ..wire import constants as T
from ..wire.constants import FORMERR, REFUSED, SERVFAIL, qtype_name, rcode_name
from ..wire.query import failure_reply
from ..xfr import message as M
from ..xfr import tsig
from ..xfr.primary import Primary, ZoneState
from .context import Shared
from .request import Handler, Request

log = logging.getLogger(__name__)

YIELD_EVERY = 8  # messages sent between turns of the event loop


class Transfer:
    def __init__(self, shared: Shared, primary: Primary, next: Handler) -> None:
        self.shared = shared
        self.primary = primary
        self.next = next
        self._tasks: set[asyncio.Future[None]] = set()

    def handle(self, req: Request) -> bytes | None:
        query = req.query
        if query.qtype == T.SOA and _has_additional(req.data):
            return self._soa(req)
        if query.qtype not in (T.AXFR, T.IXFR):
            return self.next(req)
        transfers = self.primary.transfers
        try:
            signed = tsig.verify(req.data, transfers.keys)
        except (IndexError, ValueError, struct.error):
            return failure_reply(req.data, FORMERR)
        zone = self._apex(query.labels)
        zone_text = zone.text if zone is not None else "dropped"
        if signed is not None and signed.key is None:
            reply = tsig.unsigned_error(M.error(query, tsig.NOTAUTH, None, "", None, False),
                                        signed)
            self._counted(req, zone_text, tsig.NOTAUTH, len(reply), "badkey"
                          if signed.error == tsig.BADKEY else "badsig")
            return reply
        signer = tsig.Signer(signed.key, signed) if signed is not None and signed.key else None
        if signed is not None and signed.error == tsig.BADTIME:
            return self._error(req, zone_text, tsig.NOTAUTH, None, "", signer, "badtime")
        if zone is None:
            return self._error(req, zone_text, tsig.NOTAUTH, M.NOT_AUTHORITATIVE,
                               "not a zone apex we serve", signer, "notauth")
        state = self.primary.state(zone)
        if state is None or not transfers.allowed(zone.text, _address(req.peer)):
            return self._error(req, zone_text, REFUSED, M.PROHIBITED,
                               "zone transfer not allowed from this address", signer, "refused")
        need = transfers.zones[zone.text].keys
        if need and (signed is None or signed.key_name not in need):
            return self._error(req, zone_text, REFUSED, M.PROHIBITED,
                               "zone transfer needs a TSIG key", signer, "refused")
        if self.primary.source is None or not self.primary.source.ready:
            return self._error(req, zone_text, SERVFAIL, M.NOT_READY, "not loaded yet", signer,
                               "servfail")
        if not req.tcp:
            if query.qtype == T.AXFR:
                return self._error(req, zone_text, REFUSED, M.NOT_SUPPORTED, "AXFR needs TCP",
                                   signer, "refused")
            head = [self.primary.axfr(state)[0]]
            reply = next(M.messages(query, head, signer, self._ra))
            self._counted(req, zone_text, 0, len(reply), "udp")
            return reply
        task = asyncio.ensure_future(self._stream(req, state, signer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return None

    def _soa(self, req: Request) -> bytes | None:
        """A signed SOA query (a secondary's refresh): verified, answered, signed."""
        try:
            signed = tsig.verify(req.data, self.primary.transfers.keys)
        except (IndexError, ValueError, struct.error):
            return failure_reply(req.data, FORMERR)
        if signed is None:
            return self.next(req)
        if signed.key is None:
            return tsig.unsigned_error(M.error(req.query, tsig.NOTAUTH, None, "", None,
                                               self._ra), signed)
        signer = tsig.Signer(signed.key, signed)
        if signed.error == tsig.BADTIME:
            return M.error(req.query, tsig.NOTAUTH, None, "", signer, self._ra)
        reply = self.next(req)
        return signer.sign(reply) if reply is not None else None

    @property
    def _ra(self) -> bool:
        return self.shared.forwarder is not None

    def _apex(self, labels: tuple[str, ...]) -> Zone | None:
        zone = self.primary.source.authority.zone_of(labels) if self.primary.source else None
        return zone if zone is not None and zone.labels == labels else None

    def _error(self, req: Request, zone: str, rcode: int, ede: int | None, text: str,
               signer: tsig.Signer | None, result: str) -> bytes:
        reply = M.error(req.query, rcode, ede, text, signer, self._ra)
        self._counted(req, zone, rcode, len(reply), result)
        return reply

    def _counted(self, req: Request, zone: str, rcode: int, size: int, result: str) -> None:
        req.count(self.shared.stats.tally, zone, rcode, "transfer", size)
        self.shared.stats.xfr.transfers[(zone, qtype_name(req.query.qtype), result)] += 1
        if result not in ("udp", "axfr", "ixfr", "uptodate"):
            log.info("zone transfer %s of %s from %s: %s (%s)", qtype_name(req.query.qtype),
                     zone, _address(req.peer), result, rcode_name(rcode))

    async def _stream(self, req: Request, state: ZoneState, signer: tsig.Signer | None) -> None:
        with busy(req.peer):  # a transfer being built is no idle connection
            await self._send_transfer(req, state, signer)

    async def _send_transfer(self, req: Request, state: ZoneState,
                             signer: tsig.Signer | None) -> None:
        query, send, zone = req.query, req.send, state.zone.text
        assert send is not None
        try:
            await self.primary.current(state)
            records, result = None, "axfr"
            client = M.client_serial(req.data) if query.qtype == T.IXFR else None
            if client is not None:
                records = self.primary.ixfr(state, client)
                result = "uptodate" if records is not None and len(records) == 1 else "ixfr"
            if records is None:
                records, result = self.primary.axfr(state), "axfr"
            size = 0
            for i, wire in enumerate(M.messages(query, records, signer, self._ra)):
                if _closing(req.peer):
                    result = "aborted"
                    break
                send(wire, req.peer)
                size += len(wire)
                if i % YIELD_EVERY == YIELD_EVERY - 1:
                    await asyncio.sleep(0)
            self._counted(req, zone, 0, size, result)
        except Exception:
            self.shared.stats.panics += 1
            log.exception("zone transfer of %s failed", zone)
            send(M.error(query, SERVFAIL, None, "", signer, self._ra), req.peer)


def _has_additional(data: bytes) -> bool:
    return len(data) >= 12 and (data[10] | data[11]) != 0


def _address(peer: Any) -> str:
    """The client's address: UDP gives (host, port), TCP its stream writer."""
    if isinstance(peer, tuple):
        return str(peer[0])
    info = getattr(peer, "get_extra_info", None)
    name = info("peername") if info is not None else None
    return str(name[0]) if name else ""


def _closing(peer: Any) -> bool:
    closing = getattr(peer, "is_closing", None)
    return bool(closing()) if closing is not None else False
