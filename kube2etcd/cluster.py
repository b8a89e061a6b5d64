"""The objects the watchers reported, indexed by what they produce records for. No I/O.

Records are computed per *group*: everything one Service produces (its names, SRV and PTR
records, from the Service and all its EndpointSlices), one pod IP in a namespace, or the
``dns-version`` record. A watcher event marks the groups it may have changed as dirty; the
reconciler recomputes only those.
"""

from __future__ import annotations

from collections.abc import Iterator

from .objects import (
    ENDPOINT_SLICES,
    ENDPOINTS,
    PODS,
    SERVICES,
    Changed,
    Event,
    Key,
    Listed,
    Obj,
    Source,
)
from .records import (
    Domain,
    EndpointSet,
    Pod,
    Service,
    pod_records,
    service_records,
    values,
    version_records,
)

# ("svc", namespace, name), ("pod", namespace, ip) or ("version", "", "")
Group = tuple[str, str, str]
VERSION: Group = ("version", "", "")


class ClusterState:
    def __init__(self, zone: Domain) -> None:
        self.zone = zone
        self.services: dict[Key, Service] = {}
        self.sets: dict[Key, EndpointSet] = {}  # by (namespace, object name)
        self.sets_of: dict[Key, set[str]] = {}  # (namespace, service) -> object names
        self.pods: dict[Key, Pod] = {}
        self.pods_at: dict[Key, set[str]] = {}  # (namespace, ip) -> pod names
        self.keys_of: dict[Source, set[Key]] = {}  # what each source reported
        self.listed: set[Source] = set()  # sources that delivered a complete list

    def apply(self, event: Event, dirty: dict[Group, float]) -> None:
        """Take one event in; add the groups it touched to ``dirty`` (group -> first seen)."""
        source = event.source
        known = self.keys_of.setdefault(source, set())
        if isinstance(event, Listed):
            self.listed.add(source)
            for key in known - event.objects.keys():
                self._set(source.resource, key, None, event.seen, dirty)
            for key, obj in event.objects.items():
                self._set(source.resource, key, obj, event.seen, dirty)
            self.keys_of[source] = set(event.objects)
        elif isinstance(event, Changed):
            self._set(source.resource, event.key, event.obj, event.seen, dirty)
            if event.obj is None:
                known.discard(event.key)
            else:
                known.add(event.key)

    def _set(
        self, resource: str, key: Key, obj: Obj | None, seen: float, dirty: dict[Group, float]
    ) -> None:
        def touch(group: Group) -> None:
            if group not in dirty or seen < dirty[group]:
                dirty[group] = seen

        if resource == SERVICES:
            if obj is None:
                self.services.pop(key, None)
            elif isinstance(obj, Service):
                if self.services.get(key) == obj:
                    return
                self.services[key] = obj
            touch(("svc", *key))
        elif resource in (ENDPOINT_SLICES, ENDPOINTS):
            old = self.sets.get(key)
            if old == obj:
                return
            if old is not None:
                del self.sets[key]
                self._unindex(self.sets_of, (old.namespace, old.service), old.name)
                touch(("svc", old.namespace, old.service))
            if isinstance(obj, EndpointSet):
                self.sets[key] = obj
                self.sets_of.setdefault((obj.namespace, obj.service), set()).add(obj.name)
                touch(("svc", obj.namespace, obj.service))
        elif resource == PODS:
            old_pod = self.pods.get(key)
            if old_pod == obj:
                return
            if old_pod is not None:
                del self.pods[key]
                for ip in old_pod.ips:
                    self._unindex(self.pods_at, (old_pod.namespace, ip), old_pod.name)
                    touch(("pod", old_pod.namespace, ip))
            if isinstance(obj, Pod):
                self.pods[key] = obj
                for ip in obj.ips:
                    self.pods_at.setdefault((obj.namespace, ip), set()).add(obj.name)
                    touch(("pod", obj.namespace, ip))

    @staticmethod
    def _unindex(index: dict[Key, set[str]], key: Key, name: str) -> None:
        names = index.get(key)
        if names is not None:
            names.discard(name)
            if not names:
                del index[key]

    def complete(self, sources: list[Source]) -> bool:
        """Whether every source has delivered a complete list (deletes are safe)."""
        return all(s in self.listed for s in sources)

    def groups(self) -> Iterator[Group]:
        yield VERSION
        for ns, name in self.services:
            yield ("svc", ns, name)
        for ns, ip in self.pods_at:
            yield ("pod", ns, ip)

    def desired(self, group: Group) -> dict[str, str]:
        """The etcd keys and values one group wants (empty: it wants nothing)."""
        kind, ns, name = group
        if kind == "svc":
            svc = self.services.get((ns, name))
            if svc is None:
                return {}
            sets = [self.sets[(ns, n)] for n in self.sets_of.get((ns, name), ())]
            return values(self.zone, service_records(self.zone, svc, sets))
        if kind == "pod":
            if (ns, name) not in self.pods_at:
                return {}
            return values(self.zone, pod_records(self.zone, ns, name))
        return values(self.zone, version_records(self.zone))
