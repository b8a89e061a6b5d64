"""The only module that talks to etcd: reads and watches through etcd's JSON gateway
(``skydns.etcdrange`` and ``skydns.etcdgateway``, used by nothing else), writes, leases and
transactions through the ``etcd3`` gRPC client. That client (and ``grpc``) is imported and
built only when a write first needs it, so a server that only reads never loads gRPC
(~16 MiB resident, ``skydns.etcdrange`` says more).

It hides the client's failure modes behind two exceptions: ``EtcdError`` for anything that
means "etcd is not usable right now" and ``Compacted`` for a revision that is gone. The
client is built so that it does not stay "poisoned" after an etcd restart: every endpoint
may be retried after half a second, and callers recreate the whole client after an error.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from skydns import etcdgateway, etcdrange
from skydns.etcdtypes import Compacted as Compacted
from skydns.etcdtypes import EtcdError as EtcdError
from skydns.etcdtypes import EtcdSettings as EtcdSettings
from skydns.etcdtypes import Header as Header
from skydns.etcdtypes import KeyValue as KeyValue
from skydns.etcdtypes import WatchBatch as WatchBatch
from skydns.etcdtypes import WatchCallback
from skydns.etcdtypes import parse_endpoint as parse_endpoint

log = logging.getLogger(__name__)

# A whole-prefix read comes in pages. etcd 3.4 walks every key left in the range to count
# them for each page it serves (and, if asked to sort, reads them all), so small pages
# make a big load quadratic: 500 pages of 2,000 keys took minutes at 1,000,000 keys, where
# 4 pages of 250,000 take about 2 s. So pages grow to about PAGE_BYTES each, judged by the
# size of the keys and values read so far, up to MAX_PAGE keys: the gateway writes JSON at
# ~120,000 keys a second, so a page of 500,000 kept the load waiting 4 s, where pages of
# 100,000 arrive while the previous one is digested (1,000,000 records ready in 16.2 s,
# not 20.2). gRPC (writes) is allowed messages up to MAX_MESSAGE.
FIRST_PAGE = 2000  # keys
MAX_PAGE = 100_000
PAGE_BYTES = 32 * 2**20
MAX_MESSAGE = 512 * 2**20
MAX_TXN_OPS = 128  # etcd's default --max-txn-ops (per list: compares, and operations)
PIPELINE = 8  # transactions in flight at once in apply()


def _keys_under(prefix: str) -> tuple[bytes, bytes]:
    """The range of every key below ``prefix/``: its start and end, as etcd takes them."""
    start = (prefix + "/").encode()
    return start, etcdrange.prefix_range_end(start)


def _page_limit(size: int, count: int) -> int:
    """Keys in the next page: about PAGE_BYTES, judged by ``count`` keys of ``size`` bytes."""
    return max(FIRST_PAGE, min(MAX_PAGE, PAGE_BYTES * count // max(size, 1)))


def _translate(exc: BaseException) -> EtcdError:
    """What a gRPC call raised, as an EtcdError (only they call it: grpc is loaded)."""
    import etcd3.exceptions
    import grpc

    if isinstance(exc, EtcdError):
        return exc

    if isinstance(exc, etcd3.exceptions.RevisionCompactedError):
        return Compacted(int(exc.compacted_revision))
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return EtcdError(f"{exc.code().name}: {exc.details()}")  # one line, not the repr
    cause = exc.__context__  # the library re-raises gRPC errors without their details
    if isinstance(cause, grpc.RpcError) and hasattr(cause, "code"):
        return EtcdError(f"{type(exc).__name__}: {cause.code().name}: {cause.details()}")
    return EtcdError(f"{type(exc).__name__}: {exc}".rstrip(": "))


def _failures() -> tuple[type[BaseException], ...]:
    """Everything the gRPC client library may raise when etcd is down, slow or restarting
    (evaluated in ``except`` clauses of gRPC calls only, once the library is loaded)."""
    import etcd3.exceptions
    import grpc

    return (etcd3.exceptions.Etcd3Exception, grpc.RpcError, ValueError, OSError)


class EtcdClient:
    """A connection to an etcd cluster; recreate it after any EtcdError."""

    def __init__(self, settings: EtcdSettings) -> None:
        self.settings = settings
        self._watches: dict[int, etcdgateway.GatewayWatch] = {}
        self._watch_ids = itertools.count(1)
        self._gateway = etcdrange.Gateway(settings)
        self._grpc: Any = None  # the etcd3 client, once a write needs it
        self._grpc_lock = threading.Lock()

    @property
    def _client(self) -> Any:
        """The gRPC client, built (and ``etcd3``/``grpc`` imported) on first use."""
        with self._grpc_lock:
            if self._grpc is None:
                self._grpc = self._connect_grpc()
            return self._grpc

    def _connect_grpc(self) -> Any:
        import etcd3

        try:
            client = etcd3.MultiEndpointEtcd3Client(
                endpoints=[self._endpoint(url) for url in self.settings.endpoints],
                timeout=self.settings.timeout,
                user=self.settings.username,
                password=self.settings.password,
                failover=True,
            )
        except _failures() as exc:
            raise _translate(exc) from exc
        if not any(parse_endpoint(url)[2] for url in self.settings.endpoints):
            # gRPC sends call credentials only over TLS; the library also sends the same
            # auth token as plain metadata, which is what plain-http etcd needs.
            client.call_credentials = None
        return client

    def _endpoint(self, url: str) -> Any:
        import etcd3
        import grpc

        host, port, tls = parse_endpoint(url)
        creds = None
        if tls:
            creds = grpc.ssl_channel_credentials(
                _read(self.settings.ca_file), _read(self.settings.key_file),
                _read(self.settings.cert_file),
            )
        return etcd3.Endpoint(host, port, secure=tls, creds=creds, time_retry=0.5,
                              opts=[("grpc.max_receive_message_length", MAX_MESSAGE)])

    def close(self) -> None:
        for watch_id in list(self._watches):
            self.cancel(watch_id)
        self._gateway.close()
        if self._grpc is None:
            return
        try:
            self._grpc.close()
        except Exception:
            log.debug("closing etcd client failed", exc_info=True)

    def load(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key under ``prefix/`` at one revision."""
        out: list[KeyValue] = []
        revision = 0
        for page, at in self.pages(prefix):
            out.extend(page)
            revision = at
        return out, revision

    def pages(self, prefix: str) -> Iterator[tuple[Iterator[KeyValue], int]]:
        """Every key under ``prefix/`` at one revision, in pages of growing size (each
        with that revision), so a caller can digest a big prefix a page at a time.

        Unsorted: etcd returns a range in key order anyway, and asking it to sort makes it
        read the whole rest of the range for every page. A page's keys come one by one from
        the response (digest a page before asking for the next): built all at once, the
        ~100,000 keys of a page left their memory behind between what a load keeps, ~15 MB
        more resident at 100,000 records.

        After the first page, the next one is asked for (on a thread) while the caller
        digests one: the gateway takes ~4 s to write a page of 500,000 keys as JSON."""
        start, end = _keys_under(prefix)
        revision, size, count = 0, 0, 0
        key, limit = start, FIRST_PAGE
        asked: Future[etcdrange.RangePage] | None = None
        with ThreadPoolExecutor(1, "etcd-read-ahead") as ahead:
            while True:
                page = asked.result() if asked else self._gateway.range(
                    key, end, limit=limit, revision=revision)
                revision = revision or page.revision
                following = page.following()
                # Past the first page (whose keys judge the size of the next ones), the
                # next page is on its way while the caller digests this one.
                asked = ahead.submit(self._gateway.range, following, end, revision=revision,
                                     limit=_page_limit(size, count)) \
                    if following is not None and count else None
                keys = iter(page)
                yield keys, revision
                for _ in keys:  # what the caller left: to the end of the page
                    pass
                size, count = size + page.size, count + page.count
                if following is None:
                    return
                key, limit = following, _page_limit(size, count)

    def watch(self, prefix: str, start_revision: int, callback: WatchCallback) -> int:
        """Watch ``prefix/`` from a revision; returns a watch id for ``cancel``. Read from
        etcd's JSON gateway (``skydns.etcdgateway`` says why), on the member the last
        read used when it can; the callback runs on the watch's own thread."""
        watch = etcdgateway.open_watch(self._gateway.members(), self.settings,
                                       self._gateway.token(), *_keys_under(prefix),
                                       start_revision, callback)
        watch_id = next(self._watch_ids)
        self._watches[watch_id] = watch
        return watch_id

    def cancel(self, watch_id: int) -> None:
        watch = self._watches.pop(watch_id, None)
        if watch is not None:
            watch.cancel()

    def changed_since(self, prefix: str, revision: int) -> bool:
        """Whether a key under the prefix was written after ``revision`` (a watch probe).

        Not ``count_only``: etcd ignores the revision filters when counting
        (etcd-io/etcd#18267), while ``limit`` applies after them.
        """
        page = self._gateway.range(*_keys_under(prefix), keys_only=True, limit=1,
                                   min_mod_revision=revision + 1)
        return any(True for _ in page)

    def put(self, key: str, value: str, lease: int | None = None) -> int:
        try:
            return int(self._client.put(key, value, lease=lease).header.revision)
        except _failures() as exc:
            raise _translate(exc) from exc

    def delete(self, key: str) -> bool:
        try:
            return bool(self._client.delete(key))
        except _failures() as exc:
            raise _translate(exc) from exc

    def delete_many(self, keys: Iterable[str]) -> None:
        try:
            ops = [self._client.transactions.delete(k) for k in keys]
            if ops:
                self._client.transaction(compare=[], success=ops, failure=[])
        except _failures() as exc:
            raise _translate(exc) from exc

    def get(self, key: str) -> KeyValue | None:
        """One key, or None when it does not exist."""
        return self.get_with_header(key)[0]

    def get_with_header(self, key: str) -> tuple[KeyValue | None, Header]:
        """One key (None when it does not exist) and the header of the response."""
        page = self._gateway.range(key.encode())
        header = Header(**page.header)
        for kv in page:
            return kv, header
        return None, header

    def put_if_absent(self, key: str, value: str, lease: int | None = None) -> bool:
        """Create a key (optionally on a lease) only if it does not exist; True if created."""
        txn = self._client.transactions
        try:
            ok, _ = self._client.transaction(
                compare=[txn.version(key) == 0], success=[txn.put(key, value, lease=lease)],
                failure=[],
            )
        except _failures() as exc:
            raise _translate(exc) from exc
        return bool(ok)

    def apply(
        self,
        puts: Mapping[str, str] | Iterable[tuple[str, str]],
        deletes: Iterable[str],
        *,
        expect: Mapping[str, str | None] | None = None,
        guard: tuple[str, str] | None = None,
        lease: int | None = None,
    ) -> int:
        """Write ``puts`` then ``deletes`` in transactions of at most ``MAX_TXN_OPS`` ops;
        both may be iterators, consumed as the transactions are sent.

        ``expect`` maps a key to the value it must hold before it is written or deleted
        (None: it must not exist). ``guard`` is a (key, value) every transaction also
        checks (a leader lock); ``lease`` attaches every put to that lease. Up to
        ``PIPELINE`` transactions are in flight at once, but every put is committed before
        a transaction of deletes only is sent (puts and deletes that fit one transaction
        share it), so a name written and cleaned up in one call never goes empty. Returns
        how many operations were applied, in that order (puts, then deletes): all of them,
        or the count up to the first transaction whose comparison failed. Transactions
        already in flight behind a failed one may still apply (each is safe on its own:
        its comparisons hold); none is sent after the failure is seen.
        """
        expect = expect or {}
        size = MAX_TXN_OPS - (1 if guard else 0)
        pairs = puts.items() if isinstance(puts, Mapping) else puts
        ops = itertools.chain(pairs, ((k, None) for k in deletes))
        # Built as they are sent: a million keys' requests at once took ~700 MiB.
        chunks = iter(lambda: list(itertools.islice(ops, size)), [])
        try:
            return self._pipeline(chunks, lambda c: self._txn_request(c, expect, guard, lease))
        except _failures() as exc:
            raise _translate(exc) from exc

    @staticmethod
    def _txn_request(chunk: list[tuple[str, str | None]], expect: Mapping[str, str | None],
                     guard: tuple[str, str] | None, lease: int | None) -> Any:
        """The protobuf itself: through the client's wrapper objects, building the requests
        of a million-key write took longer than etcd took to commit them."""
        from etcd3 import etcdrpc

        rpc, cmp = etcdrpc, etcdrpc.Compare
        compare = [cmp(result=cmp.EQUAL, target=cmp.VALUE, key=guard[0].encode(),
                       value=guard[1].encode())] if guard else []
        success = []
        for key, value in chunk:
            k = key.encode()
            if key in expect:
                want = expect[key]
                compare.append(cmp(result=cmp.EQUAL, target=cmp.VERSION, key=k, version=0)
                               if want is None else
                               cmp(result=cmp.EQUAL, target=cmp.VALUE, key=k,
                                   value=want.encode()))
            success.append(
                rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k))
                if value is None else
                rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value.encode(),
                                                         lease=lease or 0)))
        return rpc.TxnRequest(compare=compare, success=success)

    def _pipeline(self, chunks: Iterator[list[tuple[str, str | None]]],
                  build: Callable[[list[tuple[str, str | None]]], Any]) -> int:
        """Send a transaction per chunk with up to PIPELINE in flight (etcd commits
        concurrent ones in one raft round, where one at a time each waits for its own);
        the first chunk that starts with a delete waits until every put has committed.
        Returns how many operations the transactions before the first refused one held."""
        c = self._client
        in_flight: deque[tuple[Any, int]] = deque()  # (future, operations)
        done, puts_done = 0, False

        def settle() -> bool:
            nonlocal done
            future, count = in_flight.popleft()
            if future.result().succeeded:
                done += count
                return True
            for rest, _ in in_flight:  # let them finish: an error would hide the answer
                rest.exception()
            return False

        for chunk in chunks:
            barrier = chunk[0][1] is None and not puts_done
            while in_flight and (barrier or len(in_flight) >= PIPELINE):
                if not settle():
                    return done
            puts_done = puts_done or barrier
            in_flight.append((c.kvstub.Txn.future(build(chunk), c.timeout,
                                                  credentials=c.call_credentials,
                                                  metadata=c.metadata), len(chunk)))
        while in_flight:
            if not settle():
                return done
        return done

    def grant_lease(self, ttl: int) -> int:
        try:
            return int(self._client.lease(ttl).id)
        except _failures() as exc:
            raise _translate(exc) from exc

    def refresh_lease(self, lease_id: int) -> int:
        """Keep a lease alive once; returns its new TTL (0 means it has expired)."""
        try:
            responses = list(self._client.refresh_lease(lease_id))
        except _failures() as exc:
            raise _translate(exc) from exc
        return int(responses[-1].TTL) if responses else 0

    def revoke_lease(self, lease_id: int) -> None:
        try:
            self._client.revoke_lease(lease_id)
        except _failures() as exc:
            raise _translate(exc) from exc


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()
