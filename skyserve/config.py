"""skyserve's configuration: every option, checked, in one frozen object."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from skydns import options as o
from skydns.netaddr import split_hostport
from skydns.service import (
    ETCD_CONNECTION,
    TTL,
    ServiceConfig,
    endpoint,
    hostport,
    prefix,
    zone_name,
)

from .access import Rule, parse_rule
from .cookiejar import Jar, read_secrets
from .dnssec.keys import KeyFileError, ZoneKey, read_key
from .dnssec.signer import Signer
from .forward.cache import CacheSettings
from .forward.policy import POLICIES, ForwardSettings
from .lookup import Settings, Zone
from .querylog import CLASSES
from .ratelimit import RrlSettings
from .transport import TcpLimits
from .xfr import settings as xfr

ENV_PREFIX = "SKYSERVE_"


def upstream(raw: Any) -> str:
    value = o.text(raw).strip()
    split_hostport(value, 53)
    return value


def stub(raw: Any) -> tuple[str, tuple[str, ...]]:
    domain, sep, servers = o.text(raw).partition("=")
    if not sep or not servers.strip():
        raise ValueError(f"expected DOMAIN=HOST[:PORT][,HOST...], got {raw!r}")
    return zone_name(domain), tuple(upstream(s) for s in servers.split(",") if s.strip())


def secret_file(raw: Any) -> str:
    """A cookie secret file, read now so a bad one fails at start-up ('' for none)."""
    path = o.text(raw).strip()
    if path:
        read_secrets(path)
    return path


def nsid(raw: Any) -> str:
    value = o.text(raw)
    if len(value.encode()) > 512:  # an EDNS option must leave room for the reply
        raise ValueError(f"at most 512 bytes, got {len(value.encode())}")
    return value


def dnssec_keys(raw: Any) -> tuple[str, tuple[str, ...]]:
    """ZONE=KEYFILE[,KEYFILE]: a zone and its key files, read now so a bad one fails early."""
    domain, sep, files = o.text(raw).partition("=")
    paths = tuple(p.strip() for p in files.split(",") if p.strip())
    if not sep or not paths:
        raise ValueError(f"expected ZONE=KEYFILE[,KEYFILE], got {raw!r}")
    zone = zone_name(domain)
    read_keys(zone, paths)
    return zone, paths


def read_keys(zone: str, paths: tuple[str, ...]) -> list[ZoneKey]:
    labels = tuple(zone.rstrip(".").split(".")) if zone != "." else ()
    try:
        return [read_key(path, labels) for path in paths]
    except KeyFileError as exc:
        raise ValueError(str(exc)) from None


OPTIONS: tuple[o.Option, ...] = (
    o.Option("etcd-endpoints", endpoint, ["http://127.0.0.1:2379"],
             "etcd client URLs, comma-separated or repeated", repeat=True),
    o.Option("zone", zone_name, [], "a zone to answer for (repeat for several)", repeat=True),
    o.Option("cluster-zone", zone_name, [], "a zone (one of --zone) that kube2etcd writes: "
             "answered as CoreDNS's kubernetes plugin answers, e.g. cluster.local. "
             "(repeatable)", repeat=True),
    o.Option("fallthrough", zone_name, [], "a zone (one of --zone) whose NXDOMAIN answers are "
             "forwarded instead, e.g. in-addr.arpa. (repeatable)", repeat=True),
    o.Option("dns-addr", hostport, "0.0.0.0:53", "DNS listen address (UDP and TCP)"),
    o.Option("health-addr", hostport, ":8080", "liveness endpoint /health"),
    o.Option("ready-addr", hostport, ":8181", "readiness endpoint /ready"),
    o.Option("etcd-prefix", prefix, "/skydns", "etcd key prefix of the records"),
    o.Option("default-ttl", TTL, 300, "TTL of records that set none"),
    o.Option("min-ttl", TTL, 30, "TTL of the SOA and of negative answers"),
    o.Option("max-udp-size", o.integer(512, 65535), 1232, "largest UDP reply (EDNS0)"),
    o.Option("cache-entries", o.integer(0, 10_000_000), 20_000,
             "rendered answers kept in memory"),
    o.Option("cache-mib", o.integer(1, 65_536), 8,
             "MiB the rendered answers may take (replies, keys and bookkeeping, estimated)"),
    o.Option("nsid", nsid, "", "NSID (RFC 5001) sent to queries that ask for it, e.g. the "
             "pod name ('': none)"),
    *ETCD_CONNECTION,
    o.Option("etcd-probe-interval", o.seconds, 3.0,
             "check a silent etcd watch after this long"),
    o.Option("log-level", o.choice("debug", "info", "warning", "error"), "info", "log level"),
    # forwarding
    o.Option("upstream", upstream, [], "upstream HOST[:PORT] for names outside our zones "
             "(repeatable); default: the nameservers of --resolv-conf", repeat=True),
    o.Option("resolv-conf", o.text, "/etc/resolv.conf",
             "read upstreams from this file when no --upstream is given ('' for none)"),
    o.Option("policy", o.choice(*POLICIES), "random", "order in which upstreams are tried"),
    o.Option("stub", stub, [], "DOMAIN=HOST[:PORT][,HOST...]: forward DOMAIN to these servers "
             "(repeatable; ';' separates several in one value)", repeat=True, separator=";"),
    o.Option("forward-timeout", o.seconds, 2.0, "read timeout of one upstream query"),
    o.Option("max-concurrent", o.integer(1, 1_000_000), 1000,
             "forwarded queries in flight before new ones are refused"),
    o.Option("max-fails", o.integer(1, 1000), 2, "failures before an upstream is health-checked"),
    o.Option("health-check", o.seconds, 0.5, "interval of upstream health checks"),
    # the cache of forwarded answers
    o.Option("cache-success", o.integer(0, 10_000_000), 9984, "positive entries (0: none)"),
    o.Option("cache-denial", o.integer(0, 10_000_000), 9984, "negative entries (0: none)"),
    o.Option("cache-max-ttl", TTL, 3600, "cap on the TTL of positive entries"),
    o.Option("cache-max-denial-ttl", TTL, 1800, "cap on the TTL of negative entries"),
    o.Option("cache-min-ttl", TTL, 5, "floor on the TTL of cached entries"),
    o.Option("serve-stale", o.seconds, 0.0,
             "serve expired entries this long when upstreams fail (RFC 8767; 0: off)"),
    o.Option("prefetch", o.integer(0, 1_000_000), 0,
             "refresh entries asked for this many times before they expire (0: off)"),
    o.Option("prefetch-percent", o.integer(1, 100), 10,
             "prefetch when this much of the TTL remains"),
    # operations
    o.Option("metrics-addr", hostport, ":9153", "Prometheus metrics at /metrics"),
    o.Option("deprecated-forward-metrics", o.boolean, True,
             "also export the pre-1.7 coredns_forward_* metric names"),
    o.Option("lameduck", o.seconds, 5.0, "keep answering this long after SIGTERM"),
    o.Option("reload-interval", o.seconds, 2.0,
             "check the config file this often (0: only on SIGHUP)"),
    o.Option("workers", o.integer(1, 64), 1, "serving processes sharing the DNS port"),
    o.Option("shuffle", o.boolean, True, "rotate multi-record A/AAAA/MX/SRV answers"),
    o.Option("log-queries", o.choice(*CLASSES), [], "log queries of these classes: all, denial, "
             "error, success (repeatable)", repeat=True),
    o.Option("log-format", o.choice("text", "json"), "text", "query log format"),
    # internet-facing defences: all off by default (the cluster pod needs none of them)
    o.Option("rrl-rate", o.integer(0, 1_000_000), 0, "response rate limiting: responses a "
             "second per client prefix and response kind (0: off)"),
    o.Option("rrl-slip", o.integer(0, 10), 2, "send every Nth rate-limited response "
             "truncated, drop the rest (0: drop all)"),
    o.Option("rrl-window", o.seconds, 1.0, "seconds of responses a quiet client may send at "
             "once (the burst: rate x window)"),
    o.Option("rrl-ipv4-prefix", o.integer(8, 32), 24, "IPv4 prefix length of one client"),
    o.Option("rrl-ipv6-prefix", o.integer(16, 128), 56, "IPv6 prefix length of one client"),
    o.Option("rrl-log-only", o.boolean, False, "count and log what would be limited, send it"),
    o.Option("rrl-table-size", o.integer(1, 10_000_000), 20_000,
             "rate-limit buckets kept (least recently used go first)"),
    o.Option("cookie-secret", secret_file, "", "DNS cookies (RFC 7873/9018): a file with "
             "128-bit hex secrets, one a line, the first minting ('' : off)"),
    o.Option("cookie-require", o.boolean, False,
             "answer UDP queries without a valid server cookie with BADCOOKIE"),
    o.Option("acl", parse_rule, [], "ZONE=allow|block|drop:CIDR[,CIDR...]: who may query "
             "ZONE (repeatable; ';' separates several in one value)", repeat=True,
             separator=";"),
    o.Option("minimal-any", o.boolean, False, "answer ANY over UDP with one RRset (RFC 8482)"),
    o.Option("tcp-idle-timeout", o.seconds, 10.0, "close a TCP connection when no whole "
             "query arrives for this long"),
    o.Option("tcp-max-connections", o.integer(0, 1_000_000), 0,
             "TCP connections in total; at the limit the longest idle one is closed (0: any)"),
    o.Option("tcp-max-per-client", o.integer(0, 1_000_000), 0,
             "TCP connections per client address (0: any)"),
    o.Option("tcp-keepalive", o.boolean, False,
             "tell TCP clients that ask the idle timeout (EDNS keepalive, RFC 7828)"),
    # zone transfers (hidden primary)
    *xfr.OPTIONS,
    o.Option("dnssec", dnssec_keys, [], "ZONE=KEYFILE[,KEYFILE]: sign DO=1 answers in ZONE "
             "online with these dnssec-keygen keys (.key, .private or base name; a CSK, or "
             "a KSK and a ZSK; repeatable, ';' separates several in one value)",
             repeat=True, separator=";"),
)

# Changing these needs a restart; a reload that changes them is refused.
RESTART_ONLY = ("dns_addr", "health_addr", "ready_addr", "metrics_addr", "workers",
                "etcd_endpoints", "etcd_prefix", "etcd_ca", "etcd_cert", "etcd_key",
                "etcd_username", "etcd_password", "etcd_timeout", "etcd_probe_interval",
                "transfer", "transfer_key", "notify", "tsig_key", "serial_offset")


@dataclass(frozen=True, slots=True)
class Config(ServiceConfig):
    zone: tuple[str, ...]
    cluster_zone: tuple[str, ...]
    fallthrough: tuple[str, ...]
    dns_addr: str
    ready_addr: str
    default_ttl: int
    min_ttl: int
    max_udp_size: int
    cache_entries: int
    cache_mib: int
    nsid: str
    upstream: tuple[str, ...]
    resolv_conf: str
    policy: str
    stub: tuple[tuple[str, tuple[str, ...]], ...]
    forward_timeout: float
    max_concurrent: int
    max_fails: int
    health_check: float
    cache_success: int
    cache_denial: int
    cache_max_ttl: int
    cache_max_denial_ttl: int
    cache_min_ttl: int
    serve_stale: float
    prefetch: int
    prefetch_percent: int
    deprecated_forward_metrics: bool
    lameduck: float
    reload_interval: float
    workers: int
    shuffle: bool
    log_queries: tuple[str, ...]
    log_format: str
    rrl_rate: int
    rrl_slip: int
    rrl_window: float
    rrl_ipv4_prefix: int
    rrl_ipv6_prefix: int
    rrl_log_only: bool
    rrl_table_size: int
    cookie_secret: str
    cookie_require: bool
    acl: tuple[Rule, ...]
    minimal_any: bool
    tcp_idle_timeout: float
    tcp_max_connections: int
    tcp_max_per_client: int
    tcp_keepalive: bool
    transfer: tuple[tuple[str, tuple[str, ...]], ...]
    transfer_key: tuple[tuple[str, tuple[str, ...]], ...]
    notify: tuple[tuple[str, tuple[str, ...]], ...]
    tsig_key: tuple[str, ...]
    serial_offset: int
    dnssec: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def zones(self) -> list[Zone]:
        return [Zone(tuple(z.rstrip(".").split(".")) if z != "." else (), z in self.cluster_zone)
                for z in self.zone]

    @property
    def fallthrough_zones(self) -> frozenset[Zone]:
        return frozenset(z for z, name in zip(self.zones, self.zone, strict=True)
                         if name in self.fallthrough)

    @property
    def transfers(self) -> xfr.Transfers:
        return xfr.build(self.zone, {"transfer": self.transfer, "transfer_key": self.transfer_key,
                                     "notify": self.notify, "tsig_key": self.tsig_key,
                                     "serial_offset": self.serial_offset})

    @property
    def lookup(self) -> Settings:
        return Settings(self.default_ttl, self.min_ttl, self.etcd_prefix)

    @property
    def cache(self) -> CacheSettings:
        return CacheSettings(
            success_capacity=self.cache_success, denial_capacity=self.cache_denial,
            success_ttl=self.cache_max_ttl, denial_ttl=self.cache_max_denial_ttl,
            min_ttl=self.cache_min_ttl, stale=self.serve_stale, prefetch=self.prefetch,
            prefetch_percent=self.prefetch_percent,
        )

    @property
    def rrl(self) -> RrlSettings | None:
        if not self.rrl_rate:
            return None
        return RrlSettings(self.rrl_rate, self.rrl_slip, self.rrl_window, self.rrl_ipv4_prefix,
                           self.rrl_ipv6_prefix, self.rrl_log_only, self.rrl_table_size)

    def cookie_jar(self) -> Jar | None:
        """The cookie secrets, read from the file now (a reload reads a rotated one)."""
        if not self.cookie_secret:
            return None
        return Jar(read_secrets(self.cookie_secret), self.cookie_require)

    def signer(self) -> Signer | None:
        """The zone keys, read from their files now (a reload reads replaced ones)."""
        if not self.dnssec:
            return None
        by_name = dict(zip(self.zone, self.zones, strict=True))
        return Signer({by_name[zone]: read_keys(zone, paths) for zone, paths in self.dnssec})

    @property
    def tcp_limits(self) -> TcpLimits:
        return TcpLimits(self.tcp_idle_timeout, self.tcp_max_connections,
                         self.tcp_max_per_client)

    def forward(self, ourselves: Callable[[str], bool]) -> ForwardSettings:
        """Upstreams from the flags or resolv.conf, minus our own address."""
        upstreams = self.upstream or tuple(read_resolv_conf(self.resolv_conf)
                                           if self.resolv_conf else ())
        return ForwardSettings(
            upstreams=tuple(u for u in upstreams if not ourselves(u)), stubs=self.stub,
            policy=self.policy, read_timeout=self.forward_timeout,
            max_concurrent=self.max_concurrent, max_fails=self.max_fails,
            health_check=self.health_check, udp_size=self.max_udp_size,
        )

    def restart_changes(self, new: Config) -> list[str]:
        return [name for name in RESTART_ONLY if getattr(self, name) != getattr(new, name)]


def read_resolv_conf(path: str) -> list[str]:
    """The nameserver entries of a resolv.conf file ([] if it cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            host = parts[1]
            out.append(f"[{host}]:53" if ":" in host else f"{host}:53")
    return out


def config_path(argv: Sequence[str], env: Mapping[str, str]) -> str | None:
    """The config file in use (the flag wins over the environment), for reloads."""
    path = env.get(f"{ENV_PREFIX}CONFIG")
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
    return path or None


# The end of ``skyserve --help``: the commands that manage records instead of serving.
COMMANDS_HELP = """\
commands (each takes --help and the --etcd-* options above):
  skyserve register NAME --host HOST [--port N] [--lease SECONDS] ...
                        write one record for NAME into etcd (checked first)
  skyserve unregister NAME [--id ID | --host HOST [--port N]]
                        remove the records register wrote for NAME, and no others
  skyserve records [ZONE]
                        list the records in etcd, flagging invalid values
  skyserve dnssec ds ZONE --key KEYFILE
                        print the DS record for the parent of a --dnssec zone"""


def load(argv: Sequence[str], env: Mapping[str, str]) -> Config:
    values = o.load("skyserve", OPTIONS, argv, env, ENV_PREFIX,
                    description="DNS for SkyDNS-format records in etcd",
                    epilog=COMMANDS_HELP)
    if not values["zone"]:
        raise o.ConfigError("--zone: at least one zone is required")
    if (values["etcd_username"] is None) != (values["etcd_password"] is None):
        raise o.ConfigError("--etcd-username and --etcd-password go together")
    if values["etcd_cert"] and not values["etcd_key"]:
        raise o.ConfigError("--etcd-key: required with --etcd-cert")
    values["zone"] = tuple(dict.fromkeys(values["zone"]))
    for flag in ("fallthrough", "cluster_zone"):
        for zone in values[flag]:
            if zone not in values["zone"]:
                raise o.ConfigError(f"--{flag.replace('_', '-')}: {zone} is not one of the "
                                    "--zone zones")
    if values["rrl_window"] <= 0:
        raise o.ConfigError("--rrl-window: must be more than 0 seconds")
    if values["tcp_idle_timeout"] <= 0:
        raise o.ConfigError("--tcp-idle-timeout: must be more than 0 seconds")
    if values["cookie_require"] and not values["cookie_secret"]:
        raise o.ConfigError("--cookie-require: needs --cookie-secret")
    for zone, _ in values["dnssec"]:
        if zone not in values["zone"]:
            raise o.ConfigError(f"--dnssec: {zone} is not one of the --zone zones")
    for name in ("etcd_endpoints", "upstream", "stub", "log_queries", "fallthrough", "acl",
                 "cluster_zone", "transfer", "transfer_key", "notify", "tsig_key", "dnssec"):
        values[name] = tuple(values[name])
    xfr.build(values["zone"], values)
    zones = [tuple(z.rstrip(".").split(".")) if z != "." else () for z in values["zone"]]
    for domain, _ in values["stub"]:
        labels = tuple(domain.rstrip(".").split(".")) if domain != "." else ()
        for zone in zones:
            if labels[len(labels) - len(zone):] == zone:
                raise o.ConfigError(f"--stub: {domain} is inside our zone "
                                    f"{'.'.join(zone)}.; names in our zones are never forwarded")
    return Config(**values)
