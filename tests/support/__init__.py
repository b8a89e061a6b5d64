"""Test helpers: real etcd and DNS processes, the fake Kubernetes API, polling and sockets."""
