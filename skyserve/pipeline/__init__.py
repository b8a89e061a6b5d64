"""The query path: raw query bytes in, raw reply bytes out. No sockets, no etcd.

An ordered chain of stages, like CoreDNS's plugin chain. Each stage is a module with one
job; it gets a ``Request`` and either answers it (returns the reply bytes), drops it
(returns None), defers it (returns None and later calls ``Request.later``) or passes it on
by calling the next stage. In order:

1. ``answers`` — the answer cache: rendered replies keyed by the raw query minus its ID,
   exact for our zones (etcd changes drop exactly the entries they may change). It works
   on the raw bytes, so a hit needs no parse and no ``Request``; it is asked first.
1b. ``direct`` — first-time answers straight from the raw query and the index, for the
   common shapes (NXDOMAIN; one A/AAAA record; A/AAAA NODATA), byte for byte what stages
   2-4 would answer; None for everything else. Kept in the answer cache on their second
   sighting only, so names that never repeat do not churn it. Not with guards configured.
1c. ``sendnow`` — only while forwarding, from the UDP reading thread: a plain UDP query
   for a name outside our zones with no forward cache entry is sent upstream at once;
   with the forward cache off a plain reply is relayed from its raw bytes, byte for
   byte what stage 5 relays, and every other outcome goes through stage 5's code with
   a ``Request`` made from the raw query.
   Anything else (and everything with guards configured) goes on to stage 2.
2. ``parse`` — malformed -> FORMERR or dropped; an unknown opcode -> NOTIMP; an EDNS
   version above 0 -> BADVERS. Sets ``Request.query``.
   Then, only when configured, the guard stages that must see every query, and the
   answer cache as a stage after them (``chain.CachedAnswers``; the hot path then skips
   the raw-bytes lookup): ``cookies`` (RFC 7873/9018; marks a valid server cookie),
   ``keepalive`` (RFC 7828), ``rrl`` (response rate limiting: a filter on the reply
   coming back, deferred ones included through ``Request.filter_later``), ``acl``
   (per-zone allow/block/drop). With none configured the chain is exactly 1-5.
   ``transfer`` — only with ``--transfer``: AXFR and IXFR of our zones from the hidden
   primary (``xfr``), over TCP in several messages (after the guards, so ACLs apply to
   transfers too); other queries go on.
3. ``loopcheck`` — only while forwarding: our own loop-detection probe coming back is
   REFUSED and marks its upstream as looping.
4. ``zones`` — our zones: SERVFAIL until the first etcd load, then authoritative answers
   from ``lookup`` (room here for DNSSEC signing of what it renders), with CNAMEs that
   leave our zones completed through the forwarder; in a ``fallthrough`` zone a name we do
   not have goes on to forwarding. Other names go on.
5. ``forwarding`` — everything else, through the forwarder and its cache (``forward``);
   REFUSED when no upstream covers the name.

``chain.Pipeline`` builds the chain and is what transports call. It guarantees the
contract every stage may rely on: a stage that raises gets the client a SERVFAIL and
counts ``coredns_panics_total``; replies are logged by the query log, if on.
"""
