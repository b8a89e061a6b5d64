"""skydns.etcd against a real etcd: a whole-prefix load in growing pages."""

from __future__ import annotations

import pytest

from skydns import etcd as etcd_module
from skydns.etcd import EtcdClient, EtcdSettings
from tests.support.etcd_server import EtcdServer

pytestmark = pytest.mark.e2e


def test_a_load_crosses_pages_and_returns_every_key_once_in_key_order(
    etcd: EtcdServer, clean_prefix: str
) -> None:
    """More keys than the first page, and keys just past the prefix that must stay out."""
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
