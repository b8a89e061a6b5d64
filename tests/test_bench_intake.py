"""scripts/bench-intake's records: what it writes must be what the bridge writes, valid
records under the prefix, or skyserve would time another path (rejected values)."""

from __future__ import annotations

from benchkit.intake import bridge_like
from skydns.record import decode_record, key_path


def test_the_records_are_distinct_valid_and_shaped_as_the_bridge_writes() -> None:
    kvs = bridge_like(6001)
    assert len(kvs) == 6001 and len({k for k, _ in kvs}) == 6001
    many = bridge_like(400_000)  # past 65,536 Services: addresses must not wrap
    assert len({k for k, _ in many}) == len(many)
    records = [decode_record(k, v) for k, v in kvs]  # raises on an invalid one
    assert all(key_path(k) is not None for k, _ in kvs)
    assert sum(r.address is not None for r in records) == 3001  # ClusterIPs, endpoints
    assert sum(r.port == 80 for r in records) == 1000  # SRV port records
    assert sum(k.startswith("/skydns/arpa/in-addr/") for k, _ in kvs) == 2000
    assert all('"kube2etcd":"cluster.local"' in v.replace(" ", "") for _, v in kvs)
