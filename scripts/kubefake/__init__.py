"""A small, faithful, stdlib-only fake Kubernetes API server, for the tests and bench-bridge.

The real `kubernetes` client runs unchanged against it. Over HTTP/1.1 on 127.0.0.1 it serves
read-only get, list and watch for core v1 services, endpoints, pods and namespaces and for
discovery.k8s.io/v1 endpointslices:
* lists: `limit`/`continue` paging from a snapshot pinned at one resourceVersion (410 after
  `compact()`);
* watches: resourceVersion (none/"0" = current state as ADDED first), BOOKMARKs, `timeoutSeconds`,
  a server-side maximum duration, and an ERROR 410 Expired event for RVs older than `compact()`;
* `labelSelector` on lists and watches (`fieldSelector` is ignored).
Callers change the store directly (`upsert`, `delete`); other HTTP methods get 405.
With `tls` (a server-side ssl.SSLContext) it speaks HTTPS instead, as a real API server does to
in-cluster clients; every request's bearer token is recorded.
"""

from kubefake.api import FakeKubeAPI
from kubefake.model import RESOURCES, Request, Resource, label_match, parse_label_selector
from kubefake.objects import endpoint_slice, endpoints, namespace, pod, service

__all__ = ["RESOURCES", "FakeKubeAPI", "Request", "Resource", "endpoint_slice", "endpoints",
           "label_match", "namespace", "parse_label_selector", "pod", "service"]
