"""skydns.etcd against a real etcd: a whole-prefix load in growing pages."""

from __future__ import annotations

import pytest

from skydns import etcd as etcd_module
from skydns.etcd import EtcdClient, EtcdError, EtcdSettings
from tests.support.etcd_server import EtcdServer
from tests.support.netutil import free_port

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("page_bytes", [etcd_module.PAGE_BYTES, 1])
def test_a_load_crosses_pages_and_returns_every_key_once_in_key_order(
    etcd: EtcdServer, clean_prefix: str, page_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More keys than the first page, and keys just past the prefix that must stay out;
    with tiny page bytes every page is FIRST_PAGE keys: 4 pages, 2 of them read ahead."""
    monkeypatch.setattr(etcd_module, "PAGE_BYTES", page_bytes)
    n = etcd_module.FIRST_PAGE * 3 + 17
    keys = [f"{clean_prefix}/load/k{i:06d}" for i in range(n)]
    client = EtcdClient(EtcdSettings(endpoints=(etcd.endpoint,)))
    try:
        client.apply({k: f'{{"host":"10.0.{i // 256 % 256}.{i % 256}"}}'
                      for i, k in enumerate(keys)}, [])
        client.apply({clean_prefix + "0/outside": "{}"}, [])  # shares the prefix's bytes
        loaded, revision = client.load(clean_prefix)
    finally:
        client.delete(clean_prefix + "0/outside")
        client.close()
    assert [kv.key for kv in loaded] == keys
    assert revision >= max(kv.mod_revision for kv in loaded)


def test_reads_go_to_the_next_endpoint_when_one_is_down(
    etcd: EtcdServer, clean_prefix: str
) -> None:
    """Gets, probes and loads are gateway reads: a member that refuses connections is
    skipped."""
    down = f"http://127.0.0.1:{free_port()}"
    etcd.put(f"{clean_prefix}/x", "1")
    client = EtcdClient(EtcdSettings(endpoints=(down, etcd.endpoint), timeout=2.0))
    try:
        found, header = client.get_with_header(f"{clean_prefix}/x")
        assert found is not None and found.value == b"1"
        assert header.revision >= found.mod_revision > 0
        assert client.get(f"{clean_prefix}/missing") is None
        assert client.changed_since(clean_prefix, found.mod_revision - 1)
        assert not client.changed_since(clean_prefix, header.revision)
        assert [kv.key for kv in client.load(clean_prefix)[0]] == [f"{clean_prefix}/x"]
    finally:
        client.close()


def test_reads_report_an_etcd_that_is_down_as_etcd_error() -> None:
    client = EtcdClient(EtcdSettings(endpoints=(f"http://127.0.0.1:{free_port()}",)))
    with pytest.raises(EtcdError):
        client.get("/anything")
    client.close()
