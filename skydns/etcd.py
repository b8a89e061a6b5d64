"""The only module that talks to etcd (through the ``etcd3`` client, and for watches
through ``skydns.etcdgateway``, the only module speaking etcd's JSON gateway).

It hides the client's failure modes behind two exceptions: ``EtcdError`` for anything that
means "etcd is not usable right now" and ``Compacted`` for a revision that is gone. The
client is built so that it does not stay "poisoned" after an etcd restart: every endpoint
may be retried after half a second, and callers recreate the whole client after an error.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import etcd3
import etcd3.exceptions
import etcd3.utils
import grpc
from etcd3 import etcdrpc

from skydns import etcdgateway
from skydns.etcdtypes import Compacted as Compacted
from skydns.etcdtypes import EtcdError as EtcdError
from skydns.etcdtypes import EtcdSettings as EtcdSettings
from skydns.etcdtypes import WatchBatch as WatchBatch
from skydns.etcdtypes import WatchCallback
from skydns.etcdtypes import parse_endpoint as parse_endpoint

log = logging.getLogger(__name__)

# A whole-prefix read comes in pages. etcd 3.4 walks every key left in the range to count
# them for each page it serves (and, if asked to sort, reads them all), so small pages
# make a big load quadratic: 500 pages of 2,000 keys took minutes at 1,000,000 keys, where
# 4 pages of 250,000 take about 2 s. So pages grow to about PAGE_BYTES each, judged by the
# size of the keys and values read so far; gRPC is allowed messages up to MAX_MESSAGE.
FIRST_PAGE = 2000  # keys
MAX_PAGE = 500_000
PAGE_BYTES = 32 * 2**20
MAX_MESSAGE = 512 * 2**20
MAX_TXN_OPS = 128  # etcd's default --max-txn-ops (per list: compares, and operations)
PIPELINE = 8  # transactions in flight at once in apply()


@dataclass(slots=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Header:
    """A response header: which cluster and member answered, at which revision."""

    cluster_id: int
    member_id: int
    revision: int
    raft_term: int


def _key_value(kv: Any) -> KeyValue:
    return KeyValue(kv.key.decode("utf-8", "replace"), kv.value, kv.mod_revision, kv.lease)


def _translate(exc: BaseException) -> EtcdError:
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


# Everything the client library may raise when etcd is down, slow or restarting.
_FAILURES = (etcd3.exceptions.Etcd3Exception, grpc.RpcError, ValueError, OSError)


class EtcdClient:
    """A connection to an etcd cluster; recreate it after any EtcdError."""

    def __init__(self, settings: EtcdSettings) -> None:
        self.settings = settings
        self._watches: dict[int, etcdgateway.GatewayWatch] = {}
        self._watch_ids = itertools.count(1)
        try:
            self._client = etcd3.MultiEndpointEtcd3Client(
                endpoints=[self._endpoint(url) for url in settings.endpoints],
                timeout=settings.timeout,
                user=settings.username,
                password=settings.password,
                failover=True,
            )
        except _FAILURES as exc:
            raise _translate(exc) from exc
        if not any(parse_endpoint(url)[2] for url in settings.endpoints):
            # gRPC sends call credentials only over TLS; the library also sends the same
            # auth token as plain metadata, which is what plain-http etcd needs.
            self._client.call_credentials = None

    def _endpoint(self, url: str) -> Any:
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
        try:
            self._client.close()
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
        more resident at 100,000 records."""
        start = (prefix + "/").encode()
        end = etcd3.utils.prefix_range_end(start)
        revision: int | None = None
        limit, size, count = FIRST_PAGE, 0, 0
        while True:
            try:
                resp = self._client.get_range_response(start, end, limit=limit,
                                                       revision=revision)
            except _FAILURES as exc:
                raise _translate(exc) from exc
            if revision is None:
                revision = int(resp.header.revision)
            size += sum(len(kv.key) + len(kv.value) for kv in resp.kvs)
            count += len(resp.kvs)
            yield map(_key_value, resp.kvs), revision
            if not resp.more or not resp.kvs:
                return
            start = resp.kvs[-1].key + b"\0"
            limit = max(FIRST_PAGE, min(MAX_PAGE, PAGE_BYTES * count // max(size, 1)))

    def watch(self, prefix: str, start_revision: int, callback: WatchCallback) -> int:
        """Watch ``prefix/`` from a revision; returns a watch id for ``cancel``. Read from
        etcd's JSON gateway (``skydns.etcdgateway`` says why), on the member the gRPC
        client uses when it can; the callback runs on the watch's own thread."""
        start = (prefix + "/").encode()
        token = dict(self._client.metadata or ()).get("token")
        watch = etcdgateway.open_watch(self._members(), self.settings, token, start,
                                       etcd3.utils.prefix_range_end(start), start_revision,
                                       callback)
        watch_id = next(self._watch_ids)
        self._watches[watch_id] = watch
        return watch_id

    def _members(self) -> list[str]:
        """The endpoints, the one the gRPC client is connected to first."""
        in_use = self._client.endpoint_in_use
        netloc = in_use.netloc if in_use is not None else None
        return sorted(self.settings.endpoints,
                      key=lambda url: "{}:{}".format(*parse_endpoint(url)[:2]) != netloc)

    def cancel(self, watch_id: int) -> None:
        watch = self._watches.pop(watch_id, None)
        if watch is not None:
            watch.cancel()

    def changed_since(self, prefix: str, revision: int) -> bool:
        """Whether a key under the prefix was written after ``revision`` (a watch probe).

        Not ``count_only``: etcd ignores the revision filters when counting
        (etcd-io/etcd#18267), while ``limit`` applies after them.
        """
        start = (prefix + "/").encode()
        try:
            resp = self._client.get_range_response(
                start, etcd3.utils.prefix_range_end(start), keys_only=True, limit=1,
                min_mod_revision=revision + 1,
            )
        except _FAILURES as exc:
            raise _translate(exc) from exc
        return len(resp.kvs) > 0

    def put(self, key: str, value: str, lease: int | None = None) -> int:
        try:
            return int(self._client.put(key, value, lease=lease).header.revision)
        except _FAILURES as exc:
            raise _translate(exc) from exc

    def delete(self, key: str) -> bool:
        try:
            return bool(self._client.delete(key))
        except _FAILURES as exc:
            raise _translate(exc) from exc

    def delete_many(self, keys: Iterable[str]) -> None:
        try:
            ops = [self._client.transactions.delete(k) for k in keys]
            if ops:
                self._client.transaction(compare=[], success=ops, failure=[])
        except _FAILURES as exc:
            raise _translate(exc) from exc

    def get(self, key: str) -> KeyValue | None:
        """One key, or None when it does not exist."""
        return self.get_with_header(key)[0]

    def get_with_header(self, key: str) -> tuple[KeyValue | None, Header]:
        """One key (None when it does not exist) and the header of the response."""
        try:
            resp = self._client.get_response(key)
        except _FAILURES as exc:
            raise _translate(exc) from exc
        h = resp.header
        header = Header(int(h.cluster_id), int(h.member_id), int(h.revision), int(h.raft_term))
        for kv in resp.kvs:
            return _key_value(kv), header
        return None, header

    def put_if_absent(self, key: str, value: str, lease: int | None = None) -> bool:
        """Create a key (optionally on a lease) only if it does not exist; True if created."""
        txn = self._client.transactions
        try:
            ok, _ = self._client.transaction(
                compare=[txn.version(key) == 0], success=[txn.put(key, value, lease=lease)],
                failure=[],
            )
        except _FAILURES as exc:
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
        except _FAILURES as exc:
            raise _translate(exc) from exc

    @staticmethod
    def _txn_request(chunk: list[tuple[str, str | None]], expect: Mapping[str, str | None],
                     guard: tuple[str, str] | None, lease: int | None) -> Any:
        """The protobuf itself: through the client's wrapper objects, building the requests
        of a million-key write took longer than etcd took to commit them."""
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
        except _FAILURES as exc:
            raise _translate(exc) from exc

    def refresh_lease(self, lease_id: int) -> int:
        """Keep a lease alive once; returns its new TTL (0 means it has expired)."""
        try:
            responses = list(self._client.refresh_lease(lease_id))
        except _FAILURES as exc:
            raise _translate(exc) from exc
        return int(responses[-1].TTL) if responses else 0

    def revoke_lease(self, lease_id: int) -> None:
        try:
            self._client.revoke_lease(lease_id)
        except _FAILURES as exc:
            raise _translate(exc) from exc


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()
