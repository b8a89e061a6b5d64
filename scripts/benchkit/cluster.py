"""The ``cluster`` shape of ``--suite shapes``: what pods ask of a cluster DNS, skyserve serving
cluster.local as the pod runs it (``--cluster-zone``) beside knot serving the same names from a
zone file.

--records Services in 100 namespaces, each written to etcd as kube2etcd writes a ClusterIP
Service with one named port: its address (in the ``service`` group) and an SRV record under
``_tcp._http``. A pod resolves with the default ``ndots:5`` search path, A and AAAA together
(glibc), so the query file of a round is made of lookups, shuffled, each a run of queries:

* a Service by its full name: A (its address) and AAAA (NODATA), every Service once a pass;
* a name outside the cluster, a new one every time, tried with each search domain first:
  ``<name>.<ns>.svc.cluster.local``, ``<name>.svc.cluster.local``,
  ``<name>.cluster.local``, A and AAAA each: six NXDOMAIN answers. (The seventh and eighth
  query, the name itself, go to an upstream: not this shape's business.)

As many passes (one lookup of each kind per Service) as a round can send, so Service names
repeat (and are cached) and search-path expansions never do: three in four queries are
first-time NXDOMAIN answers for names two or more labels below what exists.
"""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchkit import servers
from benchkit.dataset import TXN_OPS, ip_for
from benchkit.net import etcd_txn_put, query_a, udp_socket
from benchkit.procs import Server

ZONE = "cluster.local."
NAMESPACES = 100
OWNER = {"kube2etcd": "cluster.local"}  # kube2etcd's marker on what it writes


def service(i: int) -> str:
    """The i-th Service's name below the zone: ``s<i>.ns<k>.svc``."""
    return f"s{i}.ns{i % NAMESPACES}.svc"


def load_services(etcd_port: int, n: int) -> None:
    """n Services' keys, as kube2etcd writes a ClusterIP Service with port http/TCP 80."""
    def value(**fields: object) -> str:
        return json.dumps({**fields, **OWNER, "ttl": 30})

    def put(lo: int) -> None:
        kvs = []
        for i in range(lo, min(n, lo + TXN_OPS // 2)):
            base = f"/skydns/local/cluster/svc/ns{i % NAMESPACES}/s{i}"
            kvs.append((f"{base}/{i:08x}", value(group="service", host=ip_for(i))))
            kvs.append((f"{base}/_tcp/_http/{i:08x}",
                        value(host=f"{service(i)}.cluster.local", port=80)))
        etcd_txn_put(etcd_port, kvs)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(put, range(0, n, TXN_OPS // 2)))  # list(): raise the first error


def write_zone(work: Path, n: int) -> Path:
    """The same names for knot: each Service's address and SRV record."""
    path = work / f"cluster-{n}.zone"
    with path.open("w") as f:
        f.write(f"$ORIGIN {ZONE}\n$TTL 30\n@ SOA ns.dns.{ZONE} hostmaster.{ZONE} 1 7200 1800 "
                f"86400 30\n@ NS ns.dns.{ZONE}\nns.dns A 127.0.0.1\n")
        f.writelines(f"{service(i)} A {ip_for(i)}\n_http._tcp.{service(i)} SRV 0 100 80 "
                     f"{service(i)}\n" for i in range(n))
    return path


def write_queries(path: Path, n: int, size: int, rng: random.Random) -> int:
    """At least ``size`` queries: passes of n Service lookups and n outside names through
    the search path, shuffled by lookup; outside names never repeat (``rng`` draws them).
    Returns how many queries the file holds."""
    z = ZONE.rstrip(".")
    lookups: list[str] = []
    while 4 * len(lookups) < size:
        for i in range(n):
            lookups.append(f"{service(i)}.{z} A\n{service(i)}.{z} AAAA\n")
            outside = f"w{rng.getrandbits(40):010x}.example.com"
            lookups.append("".join(f"{outside}.{suffix} {t}\n"
                                   for suffix in (f"ns{i % NAMESPACES}.svc.{z}", f"svc.{z}", z)
                                   for t in ("A", "AAAA")))
    rng.shuffle(lookups)
    path.write_text("".join(lookups))
    return 4 * len(lookups)


def check_answers(srv: Server, n: int) -> None:
    """Fail loudly if the server does not answer as the Services say, or answers a search
    path's expansion with anything but NXDOMAIN."""
    servers.check_answers(srv, n, ZONE.rstrip("."), service)
    sock = udp_socket(srv.port)
    try:
        for name in (f"www.example.com.{service(0)}", "www.example.com.svc", "www.example.com"):
            got = query_a(sock, f"{name}.{ZONE}", 1.0)
            if got is None or got[0] != 3:
                raise RuntimeError(f"{srv.name}: {name}.{ZONE} -> {got}, want NXDOMAIN")
    finally:
        sock.close()
