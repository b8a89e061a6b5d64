"""``skyserve dnssec ds ZONE --key KEYFILE``: the DS record to give the parent zone."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from skydns.service import zone_name

from .keys import KeyFileError, read_key


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="skyserve dnssec", description="DNSSEC helpers")
    commands = parser.add_subparsers(dest="command", required=True)
    ds = commands.add_parser("ds", help="print the DS record (SHA-256) of a zone's key")
    ds.add_argument("zone", help="the zone, e.g. cluster.local.")
    ds.add_argument("--key", required=True, action="append",
                    help="KEYFILE: .key, .private or their base name (repeatable)")
    args = parser.parse_args(argv)
    try:
        zone = zone_name(args.zone)
        labels = tuple(zone.rstrip(".").split(".")) if zone != "." else ()
        keys = [read_key(path, labels) for path in args.key]
    except (KeyFileError, ValueError) as exc:
        print(f"skyserve dnssec: error: {exc}", file=sys.stderr)
        return 2
    # The parent delegates to the secure entry points; a lone ZSK is its own entry point.
    for key in [k for k in keys if k.ksk] or keys:
        print(key.ds())
    return 0
