"""kube2etcd: keeps Kubernetes DNS records in etcd, in SkyDNS format."""

__version__ = "0.1.0"
