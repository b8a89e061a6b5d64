"""skydns: what skyserve and kube2etcd share.

The SkyDNS record model and name <-> key mapping (``record``), the one etcd client module
(``etcd``), option parsing (``options``) and the configuration base (``service``), the
probe/metrics HTTP server (``httpd``) and address helpers (``netaddr``). It imports neither
program, and neither program imports the other.
"""
