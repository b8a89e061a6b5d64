"""``skyserve register | unregister | records``: dynamic registration from the command line.

``register NAME --host H`` writes one SkyDNS record as a leaf below NAME, so several
instances can share a name: ``/skydns/org/example/web/<id>``. The id is ``--id`` or, by
default, derived from host and port, so registering the same instance again replaces it.
With ``--lease SECONDS`` the record lives on an etcd lease that the command keeps alive
until it is stopped; if the process dies, the record disappears by itself within SECONDS,
and its TTL is at most SECONDS so that resolvers do not keep it longer.
Everything is validated before anything is written.

Every value ``register`` writes carries the owner marker ``"skyserve": "register"`` (as
kube2etcd marks its own), because other writers put records under the same names: an
``etcdctl put``, kube2etcd, external-dns. ``register`` never overwrites a key without the
marker, and ``unregister NAME`` removes only marked records directly below NAME (one
instance with ``--id`` or ``--host``/``--port``), each only if it is unchanged since it was
read; it says what it removed and fails when there was nothing of its own to remove.
``records [ZONE]`` lists what is in etcd, and which values are invalid and why.
"""

from __future__ import annotations

import argparse
import hashlib
import signal
import sys
import threading
from collections.abc import Mapping, Sequence

from skydns import options as o
from skydns.etcd import EtcdClient, EtcdError, EtcdSettings
from skydns.record import (
    Record,
    RecordError,
    check_host,
    check_name,
    decode_record,
    key_to_name,
    labels_text,
    name_to_key,
    owner_of,
)
from skydns.service import etcd_settings

from . import config as cfg

COMMANDS = ("register", "unregister", "records")
OWNER_FIELD, OWNER = "skyserve", "register"  # the marker on every value register writes
ETCD_OPTIONS = [opt for opt in cfg.OPTIONS if opt.name.startswith("etcd-")]


def main(command: str, argv: Sequence[str], env: Mapping[str, str]) -> int:
    parser = _parser(command)
    args = parser.parse_args(argv)
    try:
        etcd_values = o.load(f"skyserve {command}", ETCD_OPTIONS, _etcd_argv(args), env,
                             cfg.ENV_PREFIX)
        settings = etcd_settings(etcd_values)
        run = {"register": _register, "unregister": _unregister, "records": _records}[command]
        return run(args, etcd_values["etcd_prefix"], settings)
    except (o.ConfigError, RecordError, ValueError) as exc:
        print(f"skyserve {command}: error: {exc}", file=sys.stderr)
        return 2
    except Refused as exc:
        print(f"skyserve {command}: {exc}", file=sys.stderr)
        return 1
    except EtcdError as exc:
        print(f"skyserve {command}: etcd: {exc}", file=sys.stderr)
        return 1


class Refused(Exception):
    """Nothing was written because of what is in etcd (another writer's key, nothing ours)."""


def _parser(command: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"skyserve {command}")
    if command != "records":
        p.add_argument("name", help="the DNS name, e.g. web.example.org")
    else:
        p.add_argument("zone", nargs="?", default=".", help="only records in this zone")
    if command == "register":
        p.add_argument("--host", required=True, help="IP address or host name")
        p.add_argument("--port", type=int, default=0)
        p.add_argument("--priority", type=int, default=0)
        p.add_argument("--weight", type=int, default=0)
        p.add_argument("--text", default="")
        p.add_argument("--ttl", type=int, default=0)
        p.add_argument("--mail", action="store_true", help="also an MX record")
        p.add_argument("--lease", type=int, default=0, metavar="SECONDS",
                       help="live on an etcd lease kept alive while this command runs")
    if command != "records":
        p.add_argument("--id", default=None, help="the instance label (default: from host:port)")
    if command == "unregister":
        p.add_argument("--host", default=None)
        p.add_argument("--port", type=int, default=0)
    for opt in ETCD_OPTIONS:
        p.add_argument(f"--{opt.name}", default=None, help=opt.help)
    return p


def _etcd_argv(args: argparse.Namespace) -> list[str]:
    out = []
    for opt in ETCD_OPTIONS:
        value = getattr(args, opt.name.replace("-", "_"))
        if value is not None:
            out += [f"--{opt.name}", value]
    return out


def instance_id(host: str, port: int) -> str:
    return hashlib.sha256(f"{host}:{port}".encode()).hexdigest()[:8]


def _check_id(value: str) -> str:
    if not value or "/" in value or value in (".", ".."):
        raise ValueError(f"--id {value!r} must be one non-empty key component")
    return value.lower()


def _marked(record: Record) -> str:
    return record.to_json()[:-1] + f',"{OWNER_FIELD}":"{OWNER}"}}'


def _ours(value: bytes) -> bool:
    return owner_of(value, OWNER_FIELD) == OWNER


def _register(args: argparse.Namespace, prefix: str, settings: EtcdSettings) -> int:
    labels = check_name(args.name, what="name")
    address = check_host(args.host, what="--host")
    if args.lease < 0:
        raise ValueError("--lease must be positive")
    leaf = _check_id(args.id or instance_id(args.host, args.port))
    key = name_to_key(labels, prefix) + "/" + leaf
    ttl = args.ttl
    if args.lease and not 0 < ttl <= args.lease:
        ttl = args.lease  # resolvers must not keep the name longer than it may live
    record = Record(key=key, host=args.host, port=args.port, priority=args.priority,
                    weight=args.weight, text=args.text, mail=args.mail, ttl=ttl,
                    address=address)
    value = _marked(record)
    decode_record(key, value)  # the same checks the server applies: fail before writing
    client = EtcdClient(settings)
    try:
        existing = client.get(key)
        if existing is not None and not _ours(existing.value):
            raise Refused(f"{key} holds a record skyserve register did not write "
                          f"({existing.value.decode('utf-8', 'replace')}); it is left alone: "
                          "choose another --id")
        lease = client.grant_lease(args.lease) if args.lease else None
        expect = {key: existing.value.decode() if existing else None}
        if not client.apply({key: value}, [], expect=expect, lease=lease):
            raise Refused(f"{key} changed while registering; nothing written, try again")
        if lease is None:
            print(f"registered {labels_text(labels)} at {key}: {value}")
            return 0
        print(f"registered {labels_text(labels)} at {key} on a {args.lease}s lease; "
              "Ctrl-C removes it", flush=True)
        return _keep_alive(client, lease, args.lease)
    finally:
        client.close()


def _keep_alive(client: EtcdClient, lease: int, ttl: int) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(max(ttl / 3, 0.2)):
        try:
            if client.refresh_lease(lease) <= 0:
                print("the lease expired; the record is gone", file=sys.stderr)
                return 1
        except EtcdError as exc:  # keep trying: the lease may outlive a short outage
            print(f"keeping the lease alive failed: {exc}", file=sys.stderr)
    client.revoke_lease(lease)
    print("unregistered (lease revoked)")
    return 0


def _unregister(args: argparse.Namespace, prefix: str, settings: EtcdSettings) -> int:
    labels = check_name(args.name, what="name")
    base = name_to_key(labels, prefix)
    client = EtcdClient(settings)
    try:
        if args.id or args.host:
            kv = client.get(base + "/" + _check_id(args.id or instance_id(args.host, args.port)))
            found = [kv] if kv is not None else []
        else:  # every instance registered directly below the name; deeper names are others'
            found = [kv for kv in client.load(base)[0] if "/" not in kv.key[len(base) + 1 :]]
        ours = {kv.key: kv.value.decode() for kv in found if _ours(kv.value)}
        others = len(found) - len(ours)
        if not ours:
            left = f"; {others} record(s) other writers put there left alone" if others else ""
            raise Refused(f"nothing to remove: no record skyserve register wrote for "
                          f"{labels_text(labels)}{left}")
        keys = list(ours)
        done = client.apply({}, keys, expect=ours)  # each only if unchanged since read
    finally:
        client.close()
    for key in keys[:done]:
        print(f"removed {key}: {ours[key]}")
    if others:
        print(f"left alone: {others} record(s) under {labels_text(labels)} that skyserve "
              "register did not write")
    if done < len(keys):
        raise Refused(f"{len(keys) - done} record(s) of {labels_text(labels)} changed while "
                      "unregistering and were left alone; run it again")
    return 0


def _records(args: argparse.Namespace, prefix: str, settings: EtcdSettings) -> int:
    zone = () if args.zone.strip(".") == "" else check_name(args.zone, what="zone")
    client = EtcdClient(settings)
    try:
        kvs, revision = client.load(name_to_key(zone, prefix) if zone else prefix)
    finally:
        client.close()
    for kv in kvs:
        name = key_to_name(kv.key, prefix)
        if name is None:
            continue
        try:
            decode_record(kv.key, kv.value)
            note = ""
        except RecordError as exc:
            note = f"  # INVALID: {exc}"
        print(f"{labels_text(name):40} {kv.value.decode('utf-8', 'replace')}{note}")
    print(f"# {len(kvs)} keys at etcd revision {revision}", file=sys.stderr)
    return 0
