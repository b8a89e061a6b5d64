"""In-process DNSSEC costs: cached DO=1 vs DO=0 answers, and first-time signing.

Run with the project's venv (it imports skyserve): ``.venv/bin/python scripts/bench-dnssec``.
No sockets: ``Pipeline.handle`` on raw query bytes, as a transport calls it, timed with
``time.process_time`` (CPU of this one core).
"""

from __future__ import annotations

import argparse
import time

import dns.message
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from skydns.record import decode_record, key_path, name_labels
from skyserve.dnssec.keys import ZoneKey
from skyserve.dnssec.signer import Signer
from skyserve.index import Index
from skyserve.lookup import Settings, Zone
from skyserve.pipeline.chain import Pipeline
from skyserve.pipeline.context import Settings as PipelineSettings

ZONE = Zone(name_labels("bench.test"))


def make_key(algorithm: int) -> ZoneKey:
    if algorithm == 15:
        secret: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey = (
            ed25519.Ed25519PrivateKey.generate())
        public = secret.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    else:
        secret = ec.generate_private_key(ec.SECP256R1())
        public = secret.public_key().public_bytes(Encoding.X962,
                                                  PublicFormat.UncompressedPoint)[1:]
    return ZoneKey(ZONE.labels, 257, algorithm, public, secret)


def engine(records: int, signer: Signer | None) -> Pipeline:
    e = Pipeline(PipelineSettings([ZONE], Settings(), cache_entries=10 * records + 10,
                                  shuffle=False, dnssec=signer))
    idx = Index()
    for i in range(records):
        k = f"/skydns/test/bench/h{i}"
        idx.put(key_path(k) or (), decode_record(k, f'{{"host":"10.0.{i // 250}.{i % 250}"}}'))
    e.load(idx, 7)
    return e


def queries(records: int, do: bool) -> list[bytes]:
    return [dns.message.make_query(f"h{i}.bench.test.", "A", want_dnssec=do).to_wire()
            for i in range(records)]


def per_query(e: Pipeline, wires: list[bytes], rounds: int) -> float:
    start = time.process_time()
    for _ in range(rounds):
        for w in wires:
            e.handle(w, False)
    return (time.process_time() - start) / (rounds * len(wires)) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    for algorithm, name in ((13, "ECDSAP256SHA256"), (15, "ED25519")):
        e = engine(args.records, Signer({ZONE: [make_key(algorithm)]}))
        plain, signed = queries(args.records, False), queries(args.records, True)
        start = time.process_time()
        for w in signed:  # first time: each a lookup, one signature and a render
            e.handle(w, False)
        first = (time.process_time() - start) / len(signed)
        for w in plain:
            e.handle(w, False)
        do0 = per_query(e, plain, args.rounds)
        do1 = per_query(e, signed, args.rounds)
        print(f"{name}: first-time signed answers {1 / first:,.0f}/s per core "
              f"({first * 1e6:.1f} µs, 1 RRSIG each); cached DO=0 {do0:.2f} µs, "
              f"cached DO=1 {do1:.2f} µs, ratio {do1 / do0:.2f}")
    return 0
