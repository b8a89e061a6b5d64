"""Sample a DNS server's answers and its readiness endpoint from inside a network namespace.

    nsenter --net=/proc/PID/ns/net python -m tests.support.netns_probe \\
        --dns-port 1053 --ready-port 8181 --ready-path /ready --name web.shop.svc.cluster.local \\
        --seconds 10

`podman pod stop` takes down the pod's published ports at once, while the containers are still
in their termination grace (a kubelet keeps the pod's IP until they exit). So the pod test
watches skyserve's lameduck from inside the pod's network namespace, where a Service's traffic
arrives. One JSON line per sample on stdout: {"t": monotonic seconds, "ready": HTTP status or
null, "udp": sorted A records or an error text, "tcp": same}; the first line comes at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from tests.support.netutil import http_status
from tests.support.resolver import Answer, Resolver


def _plain(answer: Answer) -> list[str] | str | None:
    return sorted(answer) if isinstance(answer, set) else answer


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dns-port", type=int, required=True)
    p.add_argument("--ready-port", type=int, required=True)
    p.add_argument("--ready-path", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--interval", type=float, default=0.2)
    args = p.parse_args(argv)
    resolver = Resolver(args.dns_port, lambda: "")
    end = time.monotonic() + args.seconds
    while (now := time.monotonic()) < end:
        udp, tcp = resolver.both(args.name, "A")
        sample = {"t": now, "ready": http_status(args.ready_port, args.ready_path),
                  "udp": _plain(udp), "tcp": _plain(tcp)}
        print(json.dumps(sample), flush=True)
        time.sleep(args.interval)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
