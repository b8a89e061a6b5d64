"""Lifecycle of the real process: lameduck shutdown, config reloads, shuffling, workers."""

from __future__ import annotations

import gc
import os
import re
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.rcode
import pytest

from skydns.record import decode_record, key_path, name_labels
from skyserve.app import YOUNG_GC_THRESHOLD, settle_heap
from skyserve.index import Index
from skyserve.lookup import Zone
from skyserve.pipeline.chain import Pipeline
from skyserve.pipeline.context import Settings
from tests.support.dns_upstream import DnsUpstream
from tests.support.dnsutil import key
from tests.support.etcd_server import EtcdServer
from tests.support.netutil import free_port, http_get
from tests.support.polling import wait_for
from tests.support.skyserve_proc import SkyserveProcess

Start = Callable[..., SkyserveProcess]
Upstreams = Callable[..., DnsUpstream]
ZONES = ("skydns.test.",)


def status(port: int, path: str) -> int | None:
    try:
        return http_get(port, path, timeout=0.5)[0]
    except OSError:
        return None


def ttl(proc: SkyserveProcess, name: str = "r.skydns.test") -> int:
    reply = proc.query(name)
    assert reply.rcode() == dns.rcode.NOERROR
    return reply.answer[0].ttl


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def first_addresses(proc: SkyserveProcess, name: str, rdtype: str, n: int = 8) -> list[str]:
    return [proc.query(name, rdtype).answer[0][0].to_text() for _ in range(n)]


@pytest.fixture
def record(etcd: EtcdServer, clean_prefix: str) -> str:
    etcd.put(key(clean_prefix, "r.skydns.test"), '{"host":"10.0.0.1"}')
    return "r.skydns.test"


class ReadyWatch:
    """Polls /ready in a thread and remembers every status it saw."""

    def __init__(self, proc: SkyserveProcess) -> None:
        self.proc = proc
        self.seen: list[int | None] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.append(status(self.proc.ready_port, "/ready"))
            time.sleep(0.01)

    def __enter__(self) -> ReadyWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)


@pytest.fixture
def ready_watch() -> Iterator[Callable[[SkyserveProcess], ReadyWatch]]:
    watches: list[ReadyWatch] = []

    def make(proc: SkyserveProcess) -> ReadyWatch:
        watches.append(ReadyWatch(proc))
        return watches[-1]

    yield make
    for w in watches:
        w.__exit__()


# -- shutdown ------------------------------------------------------------------------


@pytest.mark.e2e
def test_lameduck_on_sigterm(record: str, skyserve: Start) -> None:
    proc = skyserve(ZONES, ["--lameduck", "1.5"])
    assert proc.pid is not None
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    assert wait_for(lambda: status(proc.ready_port, "/ready") == 503, 0.3), "/ready still 200"
    status_body = http_get(proc.ready_port, "/ready")
    assert status_body[0] == 503 and "Shutting down" in status_body[1]
    answered = 0
    while time.monotonic() - t0 < 1.3:
        assert status(proc.health_port, "/health") == 200
        assert proc.query(record).rcode() == dns.rcode.NOERROR
        answered += 1
        time.sleep(0.1)
    assert answered >= 8 and proc.running
    assert wait_for(lambda: not proc.running, 1.5 + 3 - (time.monotonic() - t0), 0.05)
    assert proc.returncode == 0
    assert time.monotonic() - t0 >= 1.4


@pytest.mark.e2e
@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_skips_the_lameduck(record: str, skyserve: Start, workers: int) -> None:
    """Ctrl-C is someone at a terminal, not a load balancer draining the server."""
    proc = skyserve(ZONES, ["--lameduck", "30", "--workers", str(workers)])
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGINT)
    assert wait_for(lambda: not proc.running, 10, 0.05), "still running: lameduck on SIGINT?"
    assert proc.returncode == 0
    assert proc.log_text().count("shutting down now, without the lameduck") == workers


@pytest.mark.e2e
def test_etcd_going_away_after_ctrl_c_is_no_warning(
    fresh_etcd: EtcdServer, clean_prefix: str, skyserve: Start, dns_upstream: Upstreams
) -> None:
    """The same Ctrl-C stops an etcd started in that terminal: expected, not news. A slow
    forwarded query keeps the server shutting down long enough to see etcd go."""
    slow = dns_upstream(delay=1.5)
    slow.add("slow.example.com", "A", "192.0.2.1")
    proc = skyserve(ZONES, ["--forward-timeout", "3", "--upstream", slow.address],
                    etcd_endpoints=fresh_etcd.endpoint)
    assert proc.pid is not None
    client = threading.Thread(target=lambda: proc.query("slow.example.com", timeout=4))
    client.start()
    assert wait_for(lambda: slow.count("slow.example.com") == 1, 1)
    os.kill(proc.pid, signal.SIGINT)
    assert wait_for(lambda: "without the lameduck" in proc.log_text(), 2)
    fresh_etcd.kill()
    client.join(5)
    assert wait_for(lambda: not proc.running, 5, 0.05) and proc.returncode == 0
    assert "WARNING" not in proc.log_text(), proc.log_text()


@pytest.mark.e2e
def test_in_flight_forwarded_query_is_answered_at_shutdown(
    skyserve: Start, dns_upstream: Upstreams
) -> None:
    """Stop the listeners, then let queries already forwarded finish (lameduck 0 here)."""
    slow = dns_upstream(delay=0.8)
    slow.add("slow.example.com", "A", "192.0.2.1")
    proc = skyserve(ZONES, ["--forward-timeout", "2", "--upstream", slow.address])
    assert proc.pid is not None
    result: dict[str, object] = {}

    def ask() -> None:
        try:
            result["reply"] = proc.query("slow.example.com", timeout=3)
        except dns.exception.Timeout as exc:
            result["error"] = exc

    client = threading.Thread(target=ask)
    client.start()
    assert wait_for(lambda: slow.count("slow.example.com") == 1, 1)
    os.kill(proc.pid, signal.SIGTERM)
    client.join(5)
    assert "error" not in result, "the in-flight query was never answered"
    reply = result["reply"]
    assert isinstance(reply, dns.message.Message) and reply.rcode() == dns.rcode.NOERROR
    assert wait_for(lambda: not proc.running, 4) and proc.returncode == 0


# -- reloading -----------------------------------------------------------------------


def config_hashes(proc: SkyserveProcess) -> list[str]:
    return re.findall(r"config ([0-9a-f]{12})", proc.log_text())


@pytest.mark.e2e
def test_reload_on_config_file_change(record: str, skyserve: Start, tmp_path: Path,
                                      ready_watch: Callable[[SkyserveProcess], ReadyWatch]
                                      ) -> None:
    config = tmp_path / "skyserve.toml"
    config.write_text("default-ttl = 300\n")
    proc = skyserve(ZONES, ["--config", str(config), "--reload-interval", "0.2"])
    pid = proc.pid
    assert ttl(proc) == 300
    start_hash = config_hashes(proc)[0]
    with ready_watch(proc) as watch:
        write_atomically(config, "default-ttl = 60\n")
        assert wait_for(lambda: ttl(proc) == 60, 3)
        assert wait_for(lambda: "reloaded" in proc.log_text(), 1)
        new_hash = config_hashes(proc)[-1]
        assert new_hash != start_hash
        write_atomically(config, 'default-ttl = "sixty"\n')
        assert wait_for(lambda: "rejected" in proc.log_text(), 3)
        assert ttl(proc) == 60
        time.sleep(0.3)
    assert watch.seen and set(watch.seen) == {200}, watch.seen
    rejected = [line for line in proc.log_text().splitlines() if "rejected" in line]
    assert "default-ttl" in rejected[0] and new_hash in rejected[0]
    assert proc.pid == pid and proc.running


@pytest.mark.e2e
def test_sighup_reloads(record: str, skyserve: Start, tmp_path: Path) -> None:
    config = tmp_path / "skyserve.toml"
    config.write_text("default-ttl = 300\n")
    proc = skyserve(ZONES, ["--config", str(config), "--reload-interval", "0"])
    assert proc.pid is not None
    write_atomically(config, "default-ttl = 42\n")
    time.sleep(0.5)
    assert ttl(proc) == 300  # no polling: only a signal reloads
    os.kill(proc.pid, signal.SIGHUP)
    assert wait_for(lambda: ttl(proc) == 42, 3)
    assert "reloaded" in proc.log_text()


@pytest.mark.e2e
def test_configmap_symlink_swap_is_picked_up(record: str, skyserve: Start,
                                             tmp_path: Path) -> None:
    """Kubernetes updates a ConfigMap volume by swapping the ``..data`` symlink."""
    first, second = tmp_path / "..2024_01_01", tmp_path / "..2024_01_02"
    first.mkdir()
    second.mkdir()
    (first / "config.toml").write_text("default-ttl = 300\n")
    (second / "config.toml").write_text("default-ttl = 77\n")
    (tmp_path / "..data").symlink_to(first.name)
    (tmp_path / "config.toml").symlink_to("..data/config.toml")
    proc = skyserve(ZONES, ["--config", str(tmp_path / "config.toml"),
                            "--reload-interval", "0.2"])
    assert ttl(proc) == 300
    (tmp_path / "..data_tmp").symlink_to(second.name)
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert wait_for(lambda: ttl(proc) == 77, 3)


class AddressFromFile(SkyserveProcess):
    """A process that takes --dns-addr from its config file instead of the command line."""

    def argv(self) -> list[str]:
        argv = super().argv()
        i = argv.index("--dns-addr")
        return argv[:i] + argv[i + 2 :]


@pytest.mark.e2e
def test_changing_dns_addr_needs_a_restart(etcd: EtcdServer, clean_prefix: str, record: str,
                                           tmp_path: Path) -> None:
    config = tmp_path / "skyserve.toml"
    proc = AddressFromFile(etcd.endpoint, ZONES, prefix=clean_prefix, log_dir=tmp_path,
                           extra_args=["--config", str(config), "--reload-interval", "0.2"])
    try:
        config.write_text(f'dns-addr = "127.0.0.1:{proc.dns_port}"\ndefault-ttl = 300\n')
        proc.start()
        proc.wait_ready()
        assert ttl(proc) == 300
        write_atomically(config, f'dns-addr = "127.0.0.1:{free_port()}"\ndefault-ttl = 30\n')
        assert wait_for(lambda: "needs a restart" in proc.log_text(), 3)
        line = next(x for x in proc.log_text().splitlines() if "needs a restart" in x)
        assert "dns_addr" in line or "dns-addr" in line
        assert ttl(proc) == 300  # the whole reload was refused; the old config serves
        assert proc.is_ready()
    finally:
        proc.stop()


# -- shuffling -----------------------------------------------------------------------


@pytest.fixture
def multi(etcd: EtcdServer, clean_prefix: str) -> None:
    for i in range(1, 5):
        etcd.put(key(clean_prefix, f"x{i}.multi.skydns.test"), f'{{"host":"10.0.1.{i}"}}')
        etcd.put(key(clean_prefix, f"y{i}.multi6.skydns.test"), f'{{"host":"2001:db8::{i}"}}')
        etcd.put(key(clean_prefix, f"m{i}.mail.skydns.test"),
                 f'{{"host":"mx{i}.example.org","mail":true,"priority":10}}')
        etcd.put(key(clean_prefix, f"s{i}._http._tcp.web.skydns.test"),
                 f'{{"host":"10.0.2.{i}","port":80}}')


@pytest.mark.e2e
@pytest.mark.usefixtures("multi")
def test_shuffle_rotates_multi_record_answers(skyserve: Start) -> None:
    proc = skyserve(ZONES)
    for name, rdtype in (("multi.skydns.test", "A"), ("multi6.skydns.test", "AAAA"),
                         ("mail.skydns.test", "MX"), ("_http._tcp.web.skydns.test", "SRV")):
        firsts = first_addresses(proc, name, rdtype)
        assert len(set(firsts)) > 1, (rdtype, firsts)
        assert len(proc.query(name, rdtype).answer[0]) == 4


@pytest.mark.e2e
@pytest.mark.usefixtures("multi")
def test_no_shuffle_keeps_the_order(skyserve: Start) -> None:
    proc = skyserve(ZONES, ["--shuffle", "false"])
    for name, rdtype in (("multi.skydns.test", "A"), ("mail.skydns.test", "MX")):
        orders = {tuple(rd.to_text() for rd in proc.query(name, rdtype).answer[0])
                  for _ in range(8)}
        assert len(orders) == 1, orders


@pytest.mark.e2e
def test_forwarded_answers_are_shuffled_too(skyserve: Start, dns_upstream: Upstreams) -> None:
    up = dns_upstream()
    up.add("pool.example.com", "A", *(f"192.0.2.{i}" for i in range(1, 5)))
    proc = skyserve(ZONES, ["--upstream", up.address])
    firsts = first_addresses(proc, "pool.example.com", "A")
    assert len(set(firsts)) > 1, firsts


# -- workers -------------------------------------------------------------------------


def udp_sockets_on(port: int) -> int:
    """How many UDP sockets are bound to 127.0.0.1:port (all processes)."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as f:
        return sum(1 for line in f.readlines()[1:] if line.split()[1] == wanted)


@pytest.mark.e2e
def test_workers_share_the_port_and_metrics_add_up(record: str, skyserve: Start) -> None:
    proc = skyserve(ZONES, ["--workers", "2"])
    assert wait_for(lambda: udp_sockets_on(proc.dns_port) == 2, 3), \
        f"{udp_sockets_on(proc.dns_port)} UDP socket(s) on the DNS port with --workers 2"
    before = proc.metric("coredns_dns_requests_total", zone="skydns.test.")
    for _ in range(20):
        assert proc.query(record).rcode() == dns.rcode.NOERROR
    after = proc.metric("coredns_dns_requests_total", zone="skydns.test.")
    assert after - before == 20
    assert proc.stop() == 0
    assert udp_sockets_on(proc.dns_port) == 0


def test_an_index_frozen_after_its_load_is_still_freed_when_replaced() -> None:
    """settle_heap() hides the loaded index from the cyclic collector (gc.freeze); only
    reference counting can free it, so the index must hold no reference cycles."""
    engine = Pipeline(Settings([Zone(name_labels("skydns.test"))]))
    first = Index()
    for i in range(100):
        k = f"/skydns/test/skydns/h{i}"
        first.put(key_path(k), decode_record(k, f'{{"host":"10.0.0.{i}"}}'))
    engine.load(first, 1)
    gone = weakref.ref(first)
    del first
    thresholds = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == YOUNG_GC_THRESHOLD
        engine.load(Index(), 2)
        assert gone() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
