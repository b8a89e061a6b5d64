"""kube2etcd: keeps Kubernetes DNS records in etcd, in SkyDNS format."""
