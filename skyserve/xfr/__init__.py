"""The hidden primary: AXFR/IXFR of our zones to standard secondaries, and NOTIFY.

``settings`` (the options), ``materialize`` (SkyDNS records as RRsets at owner names),
``journal`` (serials and the versions IXFR answers from), ``primary`` (keeps both in step
with the index), ``message`` (transfer messages on the wire), ``tsig`` (RFC 8945),
``notify`` (RFC 1996) and ``metrics``. The query-path stage is ``pipeline.transfer``.
docs/transfers.md describes what a transfer contains and what it cannot express.
"""
