"""Online DNSSEC signing of our zones (off unless ``--dnssec`` names a zone's keys).

* ``keys`` — zone keys read from BIND ``dnssec-keygen`` files; DNSKEY and DS records.
* ``canon`` — RRsets in the canonical wire form that is signed (RFC 4034 section 6).
* ``sign`` — RRSIGs with fixed weekly validity windows, the same on every replica.
* ``denial`` — compact denial of existence (RFC 9824): one NSEC at the query name.
* ``signer`` — what the ``zones`` stage calls for a DO=1 answer in a signed zone.

See docs/dnssec.md for the choices and their reasons.
"""
