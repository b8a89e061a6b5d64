"""``kube2etcd`` command line (the bridge itself is not built yet)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """usage: kube2etcd --kubeconfig FILE --etcd-endpoints URL[,...] --domain cluster.local

Keeps the cluster's DNS records in etcd in SkyDNS format. Not implemented yet:
see the project's issue tracker."""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    print(USAGE, file=sys.stdout if "--help" in args or "-h" in args else sys.stderr)
    return 0 if "--help" in args or "-h" in args else 2
