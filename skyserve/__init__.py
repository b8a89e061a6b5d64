"""skyserve: an authoritative DNS server for SkyDNS-format records in etcd."""

__version__ = "0.1.0"
